"""How many samples one certification pass may take, from the size of CROWN's linear bounds.

CROWN-IBP and CROWN carry a matrix ``A`` of shape ``[samples, classes - 1, *layer shape]`` back through
the network; at the widest layer it holds ``(K - 1) × width`` numbers per sample. On TinyImageNet's
CNN7 (199 margins, 64×64×64 activations) that is 0.4 GB per sample in float64, so the 256-sample batches
that suit IBP would need 100 GB. :func:`samples_per_pass` sizes the chunks to a memory budget instead
(2 GiB on the CPU, a quarter of the GPU's memory on CUDA).
"""

from __future__ import annotations

import math

import torch
from torch import nn

CPU_BUDGET = 2 * 2**30
WORKING_COPIES = 3  # A, its positive/negative parts and the product of a relaxation step live at once
# full and alpha-CROWN: small chunks give finer progress and time-limit steps
FIXED_CHUNK = {"crown": 16, "alpha-crown": 16}


def widest_activation(model: nn.Module, x: torch.Tensor) -> int:
    """The largest number of values per sample at any layer's input or output (one forward of ``x[:1]``)."""
    widest = math.prod(x.shape[1:])

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        nonlocal widest
        for t in (*args, output):
            if isinstance(t, torch.Tensor) and t.dim() >= 1:
                widest = max(widest, math.prod(t.shape[1:]))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return widest


def memory_budget(device: torch.device) -> int:
    """Bytes the A matrices of one pass may take on ``device``."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 4
    return CPU_BUDGET


def samples_per_pass(verifier: str, model: nn.Module, x: torch.Tensor, num_classes: int, batch_size: int,
                     budget: int | None = None) -> int:
    """Samples per bound pass of ``verifier`` for inputs like ``x`` (at most ``batch_size``, at least 1)."""
    if verifier == "ibp":
        return batch_size
    budget = memory_budget(x.device) if budget is None else budget
    per_sample = (num_classes - 1) * widest_activation(model, x) * x.element_size() * WORKING_COPIES
    return max(1, min(batch_size, FIXED_CHUNK.get(verifier, batch_size), budget // per_sample))
