"""Certification protocols: everything that decides a certified number, so that only like is compared.

A protocol is the verifiers (and whether they run as a cascade), the dtype, the attack settings, the
test samples (the first N of the test split, or all of it), the eps grid the radii are snapped to, the
root-search tolerance, the time limit, and any complete-verification settings. Two certifications
under the same protocol of the same model give the same numbers; under different protocols they need
not, so a card keeps one record per protocol and tables compare runs under one protocol only.

The *track's protocol* is the one a track prescribes (``track_protocol``): float64, the PGD attack on,
the track's verifiers, samples and grid. It is the headline of every card of that track. Protocols in
float32 are marked not sound (float32 rounding can certify a margin that float64 refutes); protocols
without the attack are marked not checked (no upper bound, no soundness guard).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from actbench.config import Track, format_eps

DEFAULT_RTOL = 1e-4
SAMPLE_SELECTION = "first"  # the first N samples of the test split, in its fixed order


def default_attack() -> dict[str, Any]:
    """The attack settings of the track protocol (``certify.engine.AttackSettings`` defaults)."""
    from actbench.certify.engine import AttackSettings

    return AttackSettings().to_dict()


@dataclass(frozen=True)
class Protocol:
    """One certification protocol; ``id`` is a short hash of its canonical JSON."""

    verifiers: tuple[str, ...]
    cascade: bool = True
    dtype: str = "float64"
    samples: int | None = None  # None: the whole test split
    selection: str = SAMPLE_SELECTION
    eps_grid: tuple[float, ...] = ()
    rtol: float = DEFAULT_RTOL
    max_seconds: float | None = None
    attack: Mapping[str, Any] | None = field(default_factory=default_attack)
    complete: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Canonical, JSON-ready form (what the id hashes and what cards store, plus ``id``)."""
        data = asdict(self)
        data["verifiers"] = list(self.verifiers)
        data["eps_grid"] = [float(e) for e in self.eps_grid]
        data["attack"] = None if self.attack is None else dict(sorted(dict(self.attack).items()))
        data["complete"] = None if self.complete is None else dict(sorted(dict(self.complete).items()))
        return data

    @property
    def id(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return "p" + hashlib.sha1(text.encode()).hexdigest()[:8]

    @property
    def sound(self) -> bool:
        """Float64 bounds: the only ones actbench calls certificates."""
        return self.dtype == "float64"

    @property
    def checked(self) -> bool:
        """The attack ran: every certificate was tested against it (the soundness guard)."""
        return self.attack is not None

    def warnings(self) -> list[str]:
        """What a reader must be told wherever numbers of this protocol are shown."""
        out = []
        if not self.sound:
            out.append(f"not sound: {self.dtype} bounds (float32 rounding can certify margins float64 refutes)")
        if not self.checked:
            out.append("not checked: no attack (no upper bound, no soundness guard)")
        return out

    def label(self) -> str:
        """A one-line description: ``ibp → crown-ibp · float64 · PGD 10×1 · first 5000 samples``."""
        parts = [(" → " if self.cascade else " + ").join(self.verifiers), self.dtype]
        if self.attack is not None:
            parts.append(f"PGD {self.attack.get('steps')}×{self.attack.get('restarts')}")
        else:
            parts.append("no attack")
        if self.complete:
            eps = ", ".join(format_eps(float(e)) for e in self.complete.get("eps", []))
            parts.append(f"complete {self.complete.get('verifier')} at {eps} ({self.complete.get('timeout')} s)")
        parts.append("all test samples" if self.samples is None else f"first {self.samples} samples")
        if self.max_seconds is not None:
            parts.append(f"{self.max_seconds:g} s per verifier")
        text = " · ".join(parts)
        return text + "".join(f" [{w.split(':')[0]}]" for w in self.warnings())

    def record(self) -> dict[str, Any]:
        """The protocol as a card stores it: canonical fields plus id, label and flags."""
        return {**self.to_dict(), "id": self.id, "label": self.label(), "sound": self.sound,
                "checked": self.checked}  # fmt: skip


def from_record(record: Mapping[str, Any]) -> Protocol:
    """The protocol a card's record describes (its ``id`` is recomputed, never trusted)."""
    return Protocol(
        verifiers=tuple(record.get("verifiers") or ()),
        cascade=bool(record.get("cascade", True)),
        dtype=str(record.get("dtype", "float64")),
        samples=None if record.get("samples") is None else int(record["samples"]),
        selection=str(record.get("selection", SAMPLE_SELECTION)),
        eps_grid=tuple(float(e) for e in record.get("eps_grid") or ()),
        rtol=float(record.get("rtol", DEFAULT_RTOL)),
        max_seconds=None if record.get("max_seconds") is None else float(record["max_seconds"]),
        attack=None if record.get("attack") is None else dict(record["attack"]),
        complete=None if record.get("complete") is None else dict(record["complete"]),
    )


def track_protocol(track: Track | Mapping[str, Any]) -> Protocol:
    """The protocol a track (as run, or its card dictionary) prescribes for its headline numbers."""
    data = track.to_dict() if isinstance(track, Track) else dict(track)
    samples = data.get("certify_samples")
    return Protocol(
        verifiers=tuple(data.get("certify_verifiers") or ()),
        cascade=True,
        dtype="float64",
        samples=None if samples in (None, 0) else int(samples),
        eps_grid=tuple(sorted(float(e) for e in data.get("eps_grid") or ())),
        rtol=DEFAULT_RTOL,
        max_seconds=None,
        attack=default_attack() if data.get("attack", True) else None,
        complete=None if not data.get("certify_complete") else dict(data["certify_complete"]),
    )


def from_settings(settings: Mapping[str, Any], metrics: Mapping[str, Any]) -> Protocol:
    """The protocol of a schema-1 card, from its ``certification`` settings and ``metrics`` (migration).

    Schema-1 cards store the number of samples actually certified; a run certified on its whole test
    split therefore gets a protocol with that count (``samples`` None only when unknown).
    """
    samples = settings.get("samples", metrics.get("samples"))
    return Protocol(
        verifiers=tuple(settings.get("verifiers") or ()),
        cascade=bool(settings.get("cascade", True)),
        dtype=str(settings.get("dtype", "float64")),
        samples=None if samples is None else int(samples),
        eps_grid=tuple(sorted(float(e) for e in metrics.get("eps_grid") or ())),
        rtol=float(settings.get("rtol", DEFAULT_RTOL)),
        max_seconds=None if settings.get("max_seconds") is None else float(settings["max_seconds"]),
        attack=None if settings.get("attack") is None else dict(settings["attack"]),
        complete=None if not settings.get("complete") else dict(settings["complete"]),
    )
