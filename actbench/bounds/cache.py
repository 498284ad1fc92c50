"""Explicit reuse of prepared layers across bound calls: ``with prepared(model): ...``.

Preparing a model (flattening it, folding BatchNorm into the preceding layer, ``|W|`` for IBP) costs
up to a few tenths of a forward pass, which repeated calls on an unchanged model (a radius search,
certification) need not pay each time. A cache that guesses whether the model changed cannot be
sound: writes through ``.data`` (EMA/SWA code, users), edits of ``running_var.data`` and a new
``bn.eps`` leave every tensor's identity, storage and version counter as they were, and stale layers
give false certificates. So the reuse is explicit:

- outside a ``prepared`` block every bound call prepares the model afresh (always current);
- inside ``with prepared(model):`` calls on ``model`` reuse the layers prepared by the first call
  with the same dtype, device, per-sample input shape, train/eval flags and BatchNorm statistics
  (``bn_stats`` compared by identity). The caller promises not to change the model inside the block.
  Changes that can be seen (version counters, tensor identity, BatchNorm ``eps``) raise
  :class:`~actbench.errors.InvalidInput` instead of serving stale layers;
- calls that record autograd through the parameters or the statistics never reuse layers (their
  graph belongs to one loss).

Blocks nest; the layers are dropped when the outermost block for the model exits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from actbench.errors import InvalidInput

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def _state(modules: list[nn.Module]) -> tuple[tuple, tuple]:
    """``(train flags, state)`` of the modules. The state is what can be seen without reading values:
    identity, storage and version counter of every parameter and buffer, and BatchNorm settings."""
    parts: list = []
    for m in modules:
        for t in (*m._parameters.values(), *m._buffers.values()):
            if t is not None:
                parts.append((id(t), t.data_ptr(), t._version))
        if isinstance(m, _BN_TYPES):
            parts.append((m.eps, m.affine, m.track_running_stats))
    return tuple(m.training for m in modules), tuple(parts)


@dataclass
class _Scope:
    model: nn.Module
    modules: list[nn.Module]
    state: tuple
    depth: int = 1
    entries: dict[tuple, Any] = field(default_factory=dict)

    def check(self) -> tuple:
        """The modules' train flags (part of each entry's key); raises InvalidInput when the model
        visibly changed since the block was opened (train flags may change)."""
        flags, state = _state(self.modules)
        if state != self.state:
            raise InvalidInput("the model changed inside bounds.prepared(model): its prepared layers would be "
                               "stale; update weights, buffers or BatchNorm settings only outside the block")
        return flags


_LOCAL = threading.local()


def _scopes() -> dict[int, _Scope]:
    if not hasattr(_LOCAL, "scopes"):
        _LOCAL.scopes = {}
    return _LOCAL.scopes


@contextmanager
def prepared(model: nn.Module) -> Iterator[None]:
    """Reuse ``model``'s prepared layers for every bound call inside the block (see the module doc)."""
    if not isinstance(model, nn.Module):
        raise InvalidInput(f"prepared() needs a torch.nn.Module, got {type(model).__name__}")
    scopes = _scopes()
    scope = scopes.get(id(model))
    if scope is not None and scope.model is model:
        scope.depth += 1
    else:
        modules = list(model.modules())
        scope = scopes[id(model)] = _Scope(model, modules, _state(modules)[1])
    try:
        yield
    finally:
        scope.depth -= 1
        if scope.depth == 0:
            del scopes[id(model)]


def records_grad(params: Iterable[torch.Tensor], bn_stats: dict | None) -> bool:
    """True when a bound call would build an autograd graph through the weights or the statistics."""
    if not torch.is_grad_enabled():
        return False
    if any(p.requires_grad for p in params):
        return True
    return bn_stats is not None and any(t.requires_grad for pair in bn_stats.values() for t in pair)


def scope_of(model: nn.Module) -> _Scope | None:
    """The open ``prepared`` block of ``model``, None outside any."""
    scope = _scopes().get(id(model))
    return scope if scope is not None and scope.model is model else None
