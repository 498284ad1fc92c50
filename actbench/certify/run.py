"""(Re-)certify a trained run folder: read its card and model, certify the test split, record it in the card.

Every certification is a record under its protocol (``certify.protocol``): the card keeps one record
per protocol. A certification under the track's protocol is the card's headline (``metrics``, the
leaderboard row) and writes ``radii.parquet``; any other protocol (fewer samples, another verifier,
float32, no attack, another grid) adds or refreshes its own record and ``radii-<protocol id>.parquet``
and never touches the headline.

Every input is checked (card, verifier names, eps grid, dtype, checkpoint, data) before anything is
written; a bad input raises one ``ActbenchError`` subclass and leaves the folder untouched. On
success the radii file and then ``card.json`` are replaced atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from actbench.certify.complete import COMPLETE_VERIFIERS, STATE_FILE, CompleteSettings
from actbench.certify.engine import (
    DEFAULT_CASCADE,
    VERIFIERS,
    AttackSettings,
    certify,
    check_verifiers,
    resolve_dtype,
)
from actbench.certify.protocol import Protocol, track_protocol
from actbench.config import parse_eps, parse_eps_grid
from actbench.errors import CardError, CheckpointError, InvalidConfig, UnknownName
from actbench.store import MODEL_FILE, RADII_FILE, atomic_write, read_card, utc_now, write_card


def _resolve_verifiers(verifier: str, verifiers: Sequence[str] | None, track: dict[str, Any]) -> tuple[str, ...]:
    if verifiers is not None:
        return check_verifiers(tuple(verifiers))
    if verifier == "cascade" or verifier in COMPLETE_VERIFIERS:
        return check_verifiers(tuple(track.get("certify_verifiers") or DEFAULT_CASCADE))
    if verifier not in VERIFIERS:
        raise UnknownName("verifier", verifier, (*VERIFIERS, *COMPLETE_VERIFIERS, "cascade"))
    return (verifier,)


def _complete_settings(verifier: str, track: dict[str, Any], run_dir: Path, timeout: float | None,
                       samples: int | None) -> CompleteSettings | None:
    """The complete phase: the track's ``[certify_complete]`` table for ``cascade``; ``bab``/``milp`` force it."""
    table = dict(track.get("certify_complete") or {})
    if verifier in COMPLETE_VERIFIERS:
        table["verifier"] = verifier
    elif verifier != "cascade" or not table:
        return None
    if timeout is not None:
        table["timeout"] = timeout
    if samples is not None:
        table["samples"] = samples
    settings = CompleteSettings.from_track(table, [track["eps"]])
    settings.state_file = run_dir / STATE_FILE
    return settings


def certify_run(
    run_dir: str | Path,
    verifier: str = "cascade",
    eps_grid: str | Sequence[float] | None = None,
    samples: int | None = None,
    attack: bool = True,
    dtype: torch.dtype | str = "float64",
    max_seconds: float | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    device: str = "cpu",
    verifiers: Sequence[str] | None = None,
    batch_size: int = 256,
    attack_settings: AttackSettings | None = None,
    complete_timeout: float | None = None,
    complete_samples: int | None = None,
) -> dict[str, Any]:
    """Certify ``run_dir``'s ``model.pt`` on its track's test split; returns the updated card.

    ``verifier`` is one name or ``"cascade"`` (the track's ``certify_verifiers``, else all, cheapest
    first); ``verifiers`` gives an explicit cascade instead. ``eps_grid`` defaults to the track's grid;
    ``samples`` to the track's ``certify_samples`` (None: whole test split). ``verifier="bab"`` or
    ``"milp"`` adds complete verification after the cascade (``certify.complete``; the track's
    ``[certify_complete]`` table gives its eps, subset and time limit, ``complete_timeout`` and
    ``complete_samples`` override them); ``cascade`` runs it when the track has that table.
    """
    from actbench.data import get_info, load_splits
    from actbench.models import load_model

    run_dir = Path(run_dir)
    card = read_card(run_dir)
    track = card["track"]
    try:
        dataset = track["dataset"]
        eps_max = parse_eps(track["eps"])
    except KeyError as exc:
        raise CardError(f"{run_dir}: card track has no {exc} entry") from exc
    chosen = _resolve_verifiers(verifier, verifiers, track)
    complete = _complete_settings(verifier, track, run_dir, complete_timeout, complete_samples)
    torch_dtype = resolve_dtype(dtype)
    grid = parse_eps_grid(eps_grid if eps_grid is not None else list(track.get("eps_grid") or [0.0, eps_max]))
    eps_test = parse_eps_grid(list(track["eps_test"])) if track.get("eps_test") else []
    if samples is None:
        samples = track.get("certify_samples")
    if samples is not None and (isinstance(samples, bool) or int(samples) < 1):
        raise InvalidConfig(f"samples must be a positive number of test samples, got {samples!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise InvalidConfig(f"max_seconds must be positive, got {max_seconds}")
    info = get_info(dataset)

    model_file = run_dir / card.get("files", {}).get("model", MODEL_FILE)
    if model_file.suffix == ".onnx":  # an external submission (actbench certify --model, actbench.interop)
        from actbench.interop.external import load_submission

        model, meta = load_submission(model_file, dataset)
    else:
        model, meta = load_model(model_file)
    if tuple(meta.get("in_shape", ())) != tuple(info.in_shape) or meta.get("num_classes") != info.num_classes:
        raise CheckpointError(
            f"{model_file}: the model takes {meta.get('in_shape')} with {meta.get('num_classes')} classes, but "
            f"track dataset {dataset} has {list(info.in_shape)} with {info.num_classes}; wrong checkpoint?")
    splits = load_splits(dataset, data_dir, val_size=int(track.get("val_size", 5000)), augment=False)
    settings = attack_settings or AttackSettings()
    protocol = Protocol(
        verifiers=chosen, cascade=True, dtype=str(torch_dtype).replace("torch.", ""),
        samples=None if samples is None else int(samples), eps_grid=tuple(grid), max_seconds=max_seconds,
        attack=settings.to_dict() if attack else None, complete=None if complete is None else complete.to_dict(),
    )  # fmt: skip

    report = certify(
        model, splits.test, eps_max, grid, verifiers=chosen, attack=attack,
        samples=None if samples is None else int(samples), dtype=torch_dtype, max_seconds=max_seconds,
        batch_size=batch_size, device=device, progress=progress, eps_test=eps_test,
        attack_settings=attack_settings, complete=complete,
    )  # fmt: skip

    is_track = protocol.id == track_protocol(track).id
    radii_name = card.get("files", {}).get("radii", RADII_FILE) if is_track else f"radii-{protocol.id}.parquet"
    atomic_write(run_dir / radii_name, lambda tmp: report.records.to_parquet(tmp, index=False))
    cert_settings = {"verifier": verifier if verifiers is None else "cascade", **report.settings,
                     "protocol": protocol.id}  # fmt: skip
    record = {"protocol": protocol.record(), "track_protocol": is_track, "metrics": report.summary,
              "settings": cert_settings, "radii": radii_name, "created": utc_now()}  # fmt: skip
    others = [r for r in card.get("certifications", []) if (r.get("protocol") or {}).get("id") != protocol.id]
    card["certifications"] = [*others, record]
    if is_track:
        card["metrics"] = report.summary
        card["certification"] = cert_settings
        card["status"] = "complete"
        card.setdefault("files", {})["radii"] = radii_name
    write_card(run_dir, card)
    return read_card(run_dir)
