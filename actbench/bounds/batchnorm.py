"""The one place that decides which statistics a BatchNorm layer uses in a bound computation.

- eval mode (running statistics tracked): the running mean/var, an exact per-channel affine map;
- train mode: the statistics of the *clean* batch of the same step. ``clean_forward`` runs the normal
  forward (running statistics updated exactly once, as usual) and returns those batch statistics with
  their autograd graph, so the bound is differentiated through them like the clean loss is;
- train mode without given statistics: ``batch_stats`` recomputes them with a functional clean pass
  that never touches the modules' running statistics.

Statistics are a dict ``{BatchNorm module: (mean, var)}`` with the biased variance, which is what
BatchNorm normalises with in train mode.
"""

from __future__ import annotations

import torch
from torch import nn

from actbench.bounds.network import BatchNormLayer, ChannelAffineLayer, Network, ReLULayer
from actbench.errors import InvalidInput

BNStats = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def _moments(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (dim 1) batch mean and biased variance."""
    dims = [0, *range(2, h.dim())]
    var, mean = torch.var_mean(h, dim=dims, unbiased=False)
    return mean, var


def _needs_batch_stats(module: nn.Module) -> bool:
    return module.training or module.running_mean is None


def clean_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, BNStats | None]:
    """The model's normal forward on the clean batch, plus the batch statistics of every BatchNorm
    that normalises with batch statistics (``None`` when there is none, e.g. in eval mode).

    Running statistics are updated exactly as by ``model(x)``; the returned statistics keep autograd.
    """
    bns = [m for m in model.modules() if isinstance(m, _BN_TYPES) and _needs_batch_stats(m)]
    if not bns:
        return model(x), None
    stats: BNStats = {}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        stats[module] = _moments(args[0])

    handles = [m.register_forward_pre_hook(hook) for m in bns]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, stats


def _affine(module: nn.Module, mean: torch.Tensor, var: torch.Tensor, dtype: torch.dtype,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = mean.to(device=device, dtype=dtype)
    inv_std = torch.rsqrt(var.to(device=device, dtype=dtype) + module.eps)
    if module.affine:
        scale = module.weight.to(device=device, dtype=dtype) * inv_std
        shift = module.bias.to(device=device, dtype=dtype) - mean * scale
    else:
        scale, shift = inv_std, -mean * inv_std
    return scale, shift


def affine_provider(stats: BNStats | None):
    """A ``BNAffine`` callback for ``network.materialize``: batch stats where needed, else running ones."""

    def provide(layer: BatchNormLayer, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        module = layer.module
        if layer.needs_batch_stats:
            if stats is None or module not in stats:
                raise InvalidInput(f"{layer.name}: normalises with batch statistics but bn_stats has none "
                                   "for it; pass the stats returned by clean_forward on this model")
            mean, var = stats[module]
        else:
            mean, var = module.running_mean, module.running_var
        return _affine(module, mean, var, dtype, device)

    return provide


def batch_stats(net: Network, x: torch.Tensor) -> BNStats:
    """Batch statistics of the clean batch ``x`` for every BatchNorm that needs them, by a functional
    forward pass (keeps autograd, leaves running statistics untouched)."""
    stats: BNStats = {}
    provide = affine_provider(stats)
    h = x
    for layer in net.layers:
        if isinstance(layer, BatchNormLayer):
            if layer.needs_batch_stats:
                stats[layer.module] = _moments(h)
            h = ChannelAffineLayer(*provide(layer, h.dtype, h.device), layer.name).forward(h)
        elif isinstance(layer, ReLULayer):
            h = torch.relu(h)
        else:
            h = layer.cast(h.dtype, h.device).forward(h)
    return stats


def needs_batch_stats(net: Network) -> bool:
    """True when some BatchNorm of ``net`` normalises with batch statistics."""
    return any(layer.needs_batch_stats for layer in net.batchnorms)
