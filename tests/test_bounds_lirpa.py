"""The optional auto_LiRPA backend: agrees with the native engine (skipped when not installed)."""

from __future__ import annotations

import pytest
import torch
from test_bounds_util import one_thread, randomize_bn, tiny_conv  # noqa: F401

from actbench.bounds import lirpa, margin_bounds
from actbench.errors import InvalidConfig


@pytest.mark.skipif(lirpa.available(), reason="auto_LiRPA is installed")
def test_missing_backend_gives_clear_error():
    with pytest.raises(InvalidConfig, match="auto_LiRPA"):
        lirpa.margin_bounds(tiny_conv(), torch.rand(2, 1, 6, 6), torch.tensor([0, 1]), 0.1)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp", "crown"])
def test_lirpa_matches_native(method):
    pytest.importorskip("auto_LiRPA")
    torch.manual_seed(0)
    model = randomize_bn(tiny_conv(bn=True)).eval()
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        ours = margin_bounds(model, x, y, 0.05, method=method).lower
    theirs = lirpa.margin_bounds(model, x, y, 0.05, method=method).lower
    if method == "crown":  # we also intersect with IBP, which can only tighten
        assert (ours >= theirs - 1e-4).all()
    else:
        torch.testing.assert_close(ours, theirs.detach(), atol=1e-4, rtol=1e-4)
