"""External submissions: certify a model trained anywhere under a track's protocol (``certify --model``).

The model (ONNX, or an actbench ``model.pt`` checkpoint) is copied into a new run folder with a card that
says ``"source": "external"``, with ``"external": {"file", "sha256", "claimed"}`` (the file's SHA-256 is its
configuration identity); then the ordinary certification of a run (:func:`actbench.certify.run.certify_run`)
certifies it and writes the metrics, exactly as for actbench's own runs. So the entry is an ordinary card
that compare and the leaderboard read like any other.

The headline of an entry is always its track's protocol: ``--samples``, ``--eps-grid``, ``--verifier``,
``--no-attack`` and ``--eps`` are written into the entry's track (and so into its protocol); settings that
make a protocol unsound or unchecked against the track (float32, a time limit, other attack settings) are
refused for submissions.

Nothing is written for bad input: the track, eps, name, model file and its fit to the dataset are checked
first, and the run folder is assembled in a staging folder that is renamed into place only once the
certification has finished (an error or Ctrl-C removes it).

Input shapes: a network whose input has the dataset's shape is used as it is. One whose input is a
vector (or the same shape up to size-1 dimensions, e.g. ``[784, 1]``) of the same size gets the images
flattened in C order (channel, row, column), the usual convention; any other shape is an error rather
than a guess.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from actbench.config import load_track, parse_eps, parse_eps_grid
from actbench.errors import ActbenchError, InvalidConfig, InvalidFile, InvalidInput
from actbench.interop.files import resolve, sha256
from actbench.store import RADII_FILE, SCHEMA_VERSION, read_card, utc_now, write_card

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
SUFFIXES = {".onnx": "onnx", ".pt": "actbench"}


def _kind(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    suffix = Path(name).suffix
    if suffix not in SUFFIXES:
        raise InvalidFile(f"{path}: a submitted model must be an ONNX file (.onnx) or an actbench checkpoint (.pt)")
    return SUFFIXES[suffix]


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) for d in shape if d != 1)


def adapt_input(model: nn.Module, model_shape: tuple[int, ...], data_shape: tuple[int, ...],
                where: str) -> nn.Module:
    """``model`` made to take images of ``data_shape`` (see the module docstring), or InvalidInput."""
    from actbench.bounds.network import build_network, infer_shapes

    model_shape, data_shape = tuple(model_shape), tuple(data_shape)
    if model_shape != data_shape:
        if math.prod(model_shape) != math.prod(data_shape) or not (
                len(_squeezed(model_shape)) <= 1 or _squeezed(model_shape) == _squeezed(data_shape)):
            raise InvalidInput(f"{where}: the network takes inputs of shape {list(model_shape)}, but the dataset's "
                               f"images have shape {list(data_shape)}; submit a network for this dataset")
        first = next(iter(build_network(model).layers), None)
        from actbench.bounds.network import FlattenLayer

        if not (isinstance(first, FlattenLayer) and first.start_dim == 1):
            model = nn.Sequential(nn.Flatten(), *(model if isinstance(model, nn.Sequential) else [model]))
    try:
        infer_shapes(build_network(model), data_shape)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: the network does not fit the dataset's images {list(data_shape)}: {exc}") from exc
    return model.eval()


def load_submission(path: str | Path, dataset: str) -> tuple[nn.Module, dict[str, Any]]:
    """A submitted model ready for ``dataset``'s images, and its metadata (``in_shape``, ``num_classes``)."""
    from actbench.data import get_info

    path = resolve(path, "model")
    info = get_info(dataset)
    if _kind(path) == "onnx":
        from actbench.interop.onnx_import import load_onnx

        net = load_onnx(path)
        model, shape, classes = net.model, net.input_shape, net.num_outputs
    else:
        from actbench.models import load_model

        model, meta = load_model(path)
        shape, classes = tuple(meta["in_shape"]), int(meta["num_classes"])
    if classes != info.num_classes:
        raise InvalidInput(f"{path}: the network has {classes} outputs, but {dataset} has {info.num_classes} classes")
    model = adapt_input(model, shape, tuple(info.in_shape), str(path))
    return model, {"in_shape": list(info.in_shape), "num_classes": info.num_classes, "format": _kind(path)}


def parse_claims(items: Sequence[str] | dict[str, Any] | None) -> dict[str, float]:
    """``["clean_accuracy=0.81", "certified_accuracy@0.1=0.62"]`` -> a dict of floats (claimed numbers)."""
    if items is None:
        return {}
    pairs = items.items() if isinstance(items, dict) else (str(i).partition("=")[::2] for i in items)
    claims = {}
    for key, value in pairs:
        key = str(key).strip()
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidConfig(f"claim {key}={value!r}: use key=number, e.g. clean_accuracy=0.81") from None
        if not key or not math.isfinite(number):
            raise InvalidConfig(f"claim {key}={value!r}: use key=number, e.g. clean_accuracy=0.81")
        claims[key] = number
    return claims


def submission_track(track_name: str, eps: str | float | None):
    """The track, with its eps cap replaced by ``eps`` when given (grid rescaled, test eps kept below it)."""
    track = load_track(track_name)
    if eps is None:
        return track
    value = parse_eps(eps)
    if not value > 0:
        raise InvalidConfig(f"eps must be positive, got {eps}")
    points = max(len(track.eps_grid), 2)
    grid = tuple(value * k / (points - 1) for k in range(points))
    tests = tuple(sorted({e for e in track.eps_test if e < value} | {value}))
    return dataclasses.replace(track, eps=value, eps_grid=grid, eps_test=tests)


def certify_external(
    model_file: str | Path,
    track: str = "fashion-mnist",
    eps: str | float | None = None,
    name: str | None = None,
    claims: Sequence[str] | dict[str, Any] | None = None,
    out: str | Path = "results",
    force: bool = False,
    command: str | None = None,
    device: str = "cpu",
    **certify_options: Any,
) -> tuple[Path, dict[str, Any]]:
    """Certify a submitted model under ``track``'s protocol; returns ``(run folder, card)``.

    ``certify_options`` go to :func:`certify_run` (``verifier``, ``eps_grid``, ``samples``, ``attack``,
    ``dtype``, ``max_seconds``, ``data_dir``, ``progress``, ``attack_settings``...).
    """
    from actbench.certify.run import certify_run
    from actbench.data import load_splits
    from actbench.runner import environment

    spec = submission_track(track, eps)
    for key, default in (("dtype", "float64"), ("max_seconds", None), ("attack_settings", None)):
        if certify_options.get(key, default) not in (default, torch.float64 if key == "dtype" else default):
            raise InvalidConfig(f"an external entry is certified under its track's protocol (float64, no time "
                                f"limit, the standard attack); {key}={certify_options[key]!r} is not allowed")
    # these become the entry's track protocol, so that re-certifying the folder repeats them
    verifier = certify_options.get("verifier", "cascade")
    if verifier != "cascade":
        spec = dataclasses.replace(spec, certify_verifiers=(verifier,))
    if certify_options.get("attack") is False:
        spec = dataclasses.replace(spec, attack=False)
    if certify_options.get("samples") is not None:
        samples = certify_options.pop("samples")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InvalidConfig(f"samples must be a positive number of test samples, got {samples!r}")
        spec = dataclasses.replace(spec, certify_samples=samples)
    if certify_options.get("eps_grid") is not None:
        spec = dataclasses.replace(spec, eps_grid=tuple(sorted(parse_eps_grid(certify_options.pop("eps_grid")))))
    claimed = parse_claims(claims)
    source = resolve(model_file, "model")
    kind = _kind(source)
    digest = sha256(source)
    stem = source.name.removesuffix(".gz").rsplit(".", 1)[0]
    name = name or f"{stem}-{digest[:8]}"
    if not _NAME.match(name):
        raise InvalidConfig(f"name {name!r}: use letters, digits, '.', '_' and '-' (a folder name)")
    model, _ = load_submission(source, spec.dataset)
    load_splits(spec.dataset, certify_options.get("data_dir"), val_size=spec.val_size, augment=False)  # fail early
    track_dir = Path(out) / spec.name
    run_dir = track_dir / name
    if run_dir.exists() and not force:
        raise ActbenchError(f"{run_dir} already exists; use --force to replace it or --name to choose another")

    made_track_dir = not track_dir.exists()
    track_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=track_dir))
    stage = staging / name
    try:
        stage.mkdir()
        model_name = "model.onnx" if kind == "onnx" else "model.pt"
        shutil.copyfile(source, stage / model_name)  # gzipped ONNX is read transparently
        card = {
            "schema": SCHEMA_VERSION,
            "run_id": name,
            "status": "trained",
            "source": "external",
            "created": utc_now(),
            "command": command or f"actbench certify --model {source} --dataset {spec.name}",
            "track": {**spec.to_dict(), "preset": "full"},
            "recipe": {"name": "external", "source": str(source.name), "track": {}},
            "method": {"name": name, "title": f"external submission ({source.name})", "objective": "external",
                       "key_param": None, "params": {}, "spec": None},  # fmt: skip
            "model": {"name": "external", "format": kind, "parameters": sum(p.numel() for p in model.parameters())},
            "seed": 0,
            "data": {"dataset": spec.dataset},
            "budget": {"limit": {}, "used": {}},  # trained elsewhere: unknown
            "external": {"file": source.name, "sha256": digest, "claimed": claimed},
            "environment": environment(device),
            "files": {"model": model_name, "radii": RADII_FILE},
        }
        write_card(stage, card)
        if certify_run(stage, device=device, **certify_options)["status"] != "complete":
            raise ActbenchError(f"{name}: the certification was not under the entry's track protocol")
        if run_dir.exists():
            shutil.rmtree(run_dir)
        stage.rename(run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if made_track_dir and not any(track_dir.iterdir()):
            track_dir.rmdir()
    return run_dir, read_card(run_dir)
