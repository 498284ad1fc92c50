"""``actbench export``: a run's model as ONNX, and its test samples as VNN-LIB robustness properties.

A property per test sample, in VNN-COMP's layout::

    DIR/instances.csv                       onnx/<run-id>.onnx,vnnlib/prop_<i>_<eps>.vnnlib,<timeout>
    DIR/vnnlib/prop_<i>_<eps>.vnnlib        the box [max(x - eps, 0), min(x + eps, 1)] and "some Y_j >= Y_y"
    DIR/onnx/<run-id>.onnx                  (unless --onnx puts the network elsewhere)

The box is computed exactly as the bound engine computes it (float64 image, then clipping), and written
with round-tripping decimals, so parsing a property gives back the box ``margin_bounds`` uses for that
sample and eps. ``y`` is the sample's true label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from actbench.config import format_eps, parse_eps
from actbench.errors import CheckpointError, InvalidConfig
from actbench.interop.onnx_export import export_onnx
from actbench.interop.vnnlib import write_property
from actbench.store import MODEL_FILE, atomic_write_text, read_card

DEFAULT_TIMEOUT = 60.0


@dataclass
class ExportResult:
    onnx: Path | None = None
    instances: Path | None = None
    properties: list[Path] = field(default_factory=list)


def sample_box(x: torch.Tensor, eps: float, lo: float = 0.0, hi: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 box ``[max(x - eps, lo), min(x + eps, hi)]`` exactly as ``margin_bounds`` forms it."""
    x = x.to(torch.float64)
    e = torch.full((x.shape[0],), float(eps), dtype=torch.float64).view(-1, *([1] * (x.dim() - 1)))
    return (x - e).clamp(min=lo), (x + e).clamp(max=hi)


def eps_tag(eps: float) -> str:
    """A file-name-safe eps: ``0.1``, ``0.0313725`` (8/255)."""
    return f"{eps:.6g}"


def export_run(run_dir: str | Path, onnx: str | Path | None = None, vnnlib: str | Path | None = None,
               samples: int = 10, eps: str | float | None = None, timeout: float = DEFAULT_TIMEOUT,
               data_dir: str | Path | None = None) -> ExportResult:
    """Export ``run_dir``'s model to ``onnx`` and/or ``samples`` properties at ``eps`` into ``vnnlib``.

    Everything is checked (card, model, eps, samples, dataset) before the first file is written.
    """
    from actbench.data import load_splits
    from actbench.models import load_model

    if onnx is None and vnnlib is None:
        raise InvalidConfig("nothing to export: give --onnx FILE and/or --vnnlib DIR")
    run_dir = Path(run_dir)
    card = read_card(run_dir)
    model_file = run_dir / card.get("files", {}).get("model", MODEL_FILE)
    if model_file.suffix == ".onnx":  # an external entry: its network as adapted to the dataset's images
        from actbench.interop.external import load_submission

        model, meta = load_submission(model_file, card["track"]["dataset"])
    else:
        model, meta = load_model(model_file)
    in_shape = tuple(meta["in_shape"])
    result = ExportResult()
    split = None
    if vnnlib is not None:
        eps_value = parse_eps(card["track"]["eps"] if eps is None else eps)
        if isinstance(samples, bool) or int(samples) < 1:
            raise InvalidConfig(f"samples must be a positive number of test samples, got {samples!r}")
        if not timeout > 0:
            raise InvalidConfig(f"timeout must be positive, got {timeout}")
        dataset = card["track"].get("dataset")
        if not dataset:
            raise CheckpointError(f"{run_dir}: the card names no dataset")
        split = load_splits(dataset, data_dir, val_size=int(card["track"].get("val_size", 5000)),
                            augment=False).test.subset(int(samples))  # fmt: skip
    run_id = card.get("run_id", run_dir.name)
    if vnnlib is not None and onnx is None:
        onnx = Path(vnnlib) / "onnx" / f"{run_id}.onnx"
    if onnx is not None:
        result.onnx = export_onnx(model, in_shape, onnx, name=run_id)
    if split is None:
        return result
    root = Path(vnnlib)
    x, y = split.tensors()
    lower, upper = sample_box(x, eps_value)
    rel_onnx = Path(os.path.relpath(Path(result.onnx).resolve(), root.resolve())).as_posix()
    lines = []
    for i in range(len(split)):
        name = f"vnnlib/prop_{i}_{eps_tag(eps_value)}.vnnlib"
        comment = (f"actbench run {run_id}: {dataset} test sample {i}, label {int(y[i])}, "
                   f"eps {format_eps(eps_value)} (box [max(x - eps, 0), min(x + eps, 1)])")  # fmt: skip
        result.properties.append(write_property(root / name, lower[i].numpy(), upper[i].numpy(), int(y[i]),
                                                meta["num_classes"], comment=comment))  # fmt: skip
        lines.append(f"{rel_onnx},{name},{timeout:g}")
    result.instances = root / "instances.csv"
    atomic_write_text(result.instances, "\n".join(lines) + "\n")
    return result
