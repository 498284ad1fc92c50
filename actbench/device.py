"""Device helpers shared by training and certification: exact float32 for bounds, transfers, device facts.

* :func:`strict_fp32` turns TensorFloat-32 off for matmuls and convolutions while a bound is computed.
  On Ampere and later GPUs PyTorch runs float32 convolutions in TF32 by default (10-bit mantissa), which
  changes bound values by ~1e-3 relative; every bound and certification entry point runs inside it.
  Float64 is never affected by TF32.
* :func:`to_device` moves a host batch to the device once, through pinned memory, without blocking.
* :func:`device_info` is what a run card records about the device (the GPU's name on ``cuda``).

Everything here also runs on a CPU-only machine (the flags exist there and do nothing).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])

# The TF32 switches of torch >= 2.9 (``fp32_precision``); older versions only have ``allow_tf32``.
# The two APIs must not be mixed (torch raises when they disagree), so only one is ever touched.
_PRECISION_FLAGS = (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)


def _new_api() -> bool:
    return all(hasattr(flag, "fp32_precision") for flag in _PRECISION_FLAGS)


@contextmanager
def strict_fp32() -> Iterator[None]:
    """IEEE float32 (no TF32) for every matmul and convolution inside the block; restores the flags after."""
    if _new_api():
        previous = [flag.fp32_precision for flag in _PRECISION_FLAGS]
        try:
            for flag in _PRECISION_FLAGS:
                flag.fp32_precision = "ieee"
            yield
        finally:
            for flag, value in zip(_PRECISION_FLAGS, previous, strict=True):
                flag.fp32_precision = value
    else:  # pragma: no cover - torch < 2.9
        legacy = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy


def fp32_precision() -> tuple[str, ...]:
    """The current TF32 switches (matmul, cuDNN conv, cuDNN RNN): ``"ieee"`` inside :func:`strict_fp32`."""
    if _new_api():
        return tuple(str(flag.fp32_precision) for flag in _PRECISION_FLAGS)
    return tuple("tf32" if on else "ieee" for on in (torch.backends.cuda.matmul.allow_tf32,  # pragma: no cover
                                                      torch.backends.cudnn.allow_tf32))


def no_tf32(fn: F) -> F:
    """Decorator form of :func:`strict_fp32` for bound and certification entry points."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with strict_fp32():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device``: from pinned host memory without blocking on CUDA, unchanged on the CPU.

    The copy is ordered on the current stream, so kernels that use the result wait for it while the host
    goes on preparing the next batch. (A plain ``.to("cuda")`` of pageable memory makes the host wait
    until the GPU has finished everything queued before it.)
    """
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def sync_interval(device: torch.device | str) -> int:
    """Training steps between reads of device values by the host (loss, stats, divergence check).

    Reading a GPU value stalls the host until the GPU has caught up; on the CPU it costs nothing.
    """
    return 1 if torch.device(device).type == "cpu" else 50


def ray_gpu_ids() -> list[int | str] | None:
    """The GPUs Ray assigned to this process (indices, or UUIDs when the node names GPUs so), or None when
    Ray is not running in it."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    try:
        return [int(i) if str(i).isdigit() else str(i) for i in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001 - an old Ray or a process outside any task: no assignment to report
        return None


def device_info(device: torch.device | str) -> dict[str, Any]:
    """What a run card records about the device: its type and, on CUDA, the GPU's name and memory."""
    device = torch.device(device)
    info: dict[str, Any] = {"type": device.type}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        info["cuda_visible_devices"] = visible
    gpus = ray_gpu_ids()
    if gpus is not None:
        info["ray_gpu_ids"] = gpus
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update({
            "index": index,
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "count": torch.cuda.device_count(),
        })  # fmt: skip
    return info
