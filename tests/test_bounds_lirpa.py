"""The optional auto_LiRPA backend: agrees with the native engine (skipped when not installed)."""

from __future__ import annotations

import pytest
import torch
from test_bounds_util import one_thread, randomize_bn, tiny_conv  # noqa: F401

from actbench.bounds import lirpa, margin_bounds
from actbench.errors import InvalidConfig
from actbench.models import create_model


@pytest.mark.skipif(lirpa.available(), reason="auto_LiRPA is installed")
def test_missing_backend_gives_clear_error():
    with pytest.raises(InvalidConfig, match="auto_LiRPA"):
        lirpa.margin_bounds(tiny_conv(), torch.rand(2, 1, 6, 6), torch.tensor([0, 1]), 0.1)


def _agree(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, method: str) -> None:
    with torch.no_grad():
        ours = margin_bounds(model, x, y, eps, method=method).lower
        theirs = lirpa.margin_bounds(model, x, y, eps, method=method).lower
    if method == "crown":  # we also intersect with IBP, which can only tighten
        assert (ours >= theirs - 1e-4).all()
        assert (ours > theirs + 1e-3).float().mean() < 0.5
    else:
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_lirpa_matches_native(method):
    pytest.importorskip("auto_LiRPA")
    torch.manual_seed(0)
    model = randomize_bn(tiny_conv(bn=True)).eval()
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    _agree(model, x, y, 0.05, method)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_lirpa_matches_native_on_zoo_cnn(method):
    """Zoo models start with Normalize ([C, 1, 1] buffers), which crashed auto_LiRPA's CROWN."""
    pytest.importorskip("auto_LiRPA")
    torch.manual_seed(1)
    model = randomize_bn(create_model("cnn3", (1, 12, 12), 10, [0.3], [0.3]), 1).eval()
    x, y = torch.rand(3, 1, 12, 12), torch.tensor([0, 4, 9])
    _agree(model, x, y, 0.02, method)
