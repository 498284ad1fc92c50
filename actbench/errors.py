"""One exception hierarchy for every user-facing error.

The CLI catches :class:`ActbenchError`, prints its message (no traceback unless ``--debug``) and
exits with status 2. Each message says what went wrong and what to do about it.
"""

from __future__ import annotations


class ActbenchError(Exception):
    """Base class: bad input or an environment problem the user can fix."""


class UnknownName(ActbenchError):
    """A method, dataset, track, model or verifier name that is not registered."""

    def __init__(self, kind: str, name: str, choices: list[str] | tuple[str, ...]):
        self.kind, self.name, self.choices = kind, name, list(choices)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(self.choices))}")


class DatasetNotFound(ActbenchError):
    """Dataset files are not on disk and cannot be downloaded."""


class InvalidConfig(ActbenchError):
    """A config value, TOML spec, eps string or budget that does not make sense."""


class InvalidInput(ActbenchError):
    """Tensors or arguments of the wrong shape, range or type given to a library call."""


class UnsupportedLayer(ActbenchError):
    """The bound engine met a module it has no sound rule for."""


class CheckpointError(ActbenchError):
    """A checkpoint or run directory that is missing, corrupt or incompatible."""


class CardError(ActbenchError):
    """A run card that is missing, corrupt or fails schema validation."""


class NoResults(ActbenchError):
    """A results folder that is missing, or holds no complete run (of the asked track, budget or protocol)."""


class ResourceLimit(ActbenchError):
    """A computation refused because it would exceed a memory or time limit."""


class SplitSealed(ActbenchError):
    """A data split was read while it was sealed (``actbench.splitguard``): a search touched the test split.

    Like :class:`SoundnessError`, this is never the user's fault: it means a bug in the search.
    """


class SoundnessError(ActbenchError):
    """An internal consistency check failed: a certificate contradicts an attack.

    This is never the user's fault; it means a bug in a verifier and must be reported.
    """


class InvalidFile(ActbenchError):
    """A model or property file (ONNX, VNN-LIB, counterexample, instances.csv) that is missing or malformed."""
