"""Model zoo. Every model takes raw [0,1] images and normalises inside its first layer (DESIGN §4).

Models are plain ``nn.Sequential`` stacks of layers the bound engine understands (Normalize, Conv2d,
BatchNorm, ReLU, Flatten, Linear), so bounds need no tracing. Registry in the style of timm:
``@register_model`` and ``create_model(name, in_shape, num_classes, mean, std)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from actbench.errors import InvalidConfig, UnknownName

ModelFactory = Callable[[tuple[int, int, int], int], list[nn.Module]]
_MODELS: dict[str, ModelFactory] = {}
_DESCRIPTIONS: dict[str, str] = {}


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; the first layer of every model.

    ``mean`` and ``std`` are buffers of shape ``[C, 1, 1]`` so the layer is an exact per-channel affine
    map the bound engine can propagate through.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise InvalidConfig("Normalize: mean and std must have the same number of channels")
        if any(s <= 0 for s in std):
            raise InvalidConfig("Normalize: std must be positive")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"channels={self.mean.numel()}"


def register_model(name: str, description: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory returning the layers (after Normalize) of a model."""

    def wrap(factory: ModelFactory) -> ModelFactory:
        _MODELS[name] = factory
        _DESCRIPTIONS[name] = description
        return factory

    return wrap


def list_models() -> dict[str, str]:
    """Registered model names with a one-line description."""
    return dict(sorted(_DESCRIPTIONS.items()))


def create_model(
    name: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Sequential:
    """Build a registered model for inputs of shape ``in_shape = (C, H, W)`` in [0, 1]."""
    if name not in _MODELS:
        raise UnknownName("model", name, list(_MODELS))
    channels = in_shape[0]
    mean = [0.0] * channels if mean is None else list(mean)
    std = [1.0] * channels if std is None else list(std)
    if len(mean) != channels or len(std) != channels:
        raise InvalidConfig(f"model {name}: mean/std need {channels} channels for input shape {in_shape}")
    return nn.Sequential(Normalize(mean, std), *_MODELS[name](in_shape, num_classes))


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@register_model("mlp", "3-layer MLP (256-256), BatchNorm; a fast baseline")
def _mlp(in_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    flat = math.prod(in_shape)
    return [
        nn.Flatten(),
        nn.Linear(flat, 256), nn.BatchNorm1d(256), nn.ReLU(),
        nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(),
        nn.Linear(256, num_classes),
    ]  # fmt: skip


@register_model("cnn3", "small CNN: conv16-s2, conv32-s2, fc128, BatchNorm; the CPU track model")
def _cnn3(in_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    c, h, w = in_shape
    h2, w2 = _conv_out(_conv_out(h, 4, 2, 1), 4, 2, 1), _conv_out(_conv_out(w, 4, 2, 1), 4, 2, 1)
    return [
        nn.Conv2d(c, 16, 4, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * h2 * w2, 128), nn.BatchNorm1d(128), nn.ReLU(),
        nn.Linear(128, num_classes),
    ]  # fmt: skip


@register_model("cnn5", "CNN with 4 conv layers (32-32-64-64) and fc512, BatchNorm")
def _cnn5(in_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    c, h, w = in_shape
    h2, w2 = _conv_out(_conv_out(h, 3, 1, 1), 4, 2, 1), _conv_out(_conv_out(w, 3, 1, 1), 4, 2, 1)
    h3, w3 = _conv_out(_conv_out(h2, 3, 1, 1), 4, 2, 1), _conv_out(_conv_out(w2, 3, 1, 1), 4, 2, 1)
    return [
        nn.Conv2d(c, 32, 3, stride=1, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 4, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=1, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * h3 * w3, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, num_classes),
    ]  # fmt: skip


def _cnn7_layers(in_shape: tuple[int, int, int], num_classes: int, last_stride: int) -> list[nn.Module]:
    """CNN7-BN of Shi et al. 2021 (width 64, linear 512); ``last_stride=2`` gives the TinyImageNet variant."""
    c, h, w = in_shape
    h_out, w_out = _conv_out(h, 3, 2, 1), _conv_out(w, 3, 2, 1)
    h_out, w_out = _conv_out(h_out, 3, last_stride, 1), _conv_out(w_out, 3, last_stride, 1)

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return [
        *block(c, 64, 1),
        *block(64, 64, 1),
        *block(64, 128, 2),
        *block(128, 128, 1),
        *block(128, 128, last_stride),
        nn.Flatten(),
        nn.Linear(128 * h_out * w_out, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, num_classes),
    ]  # fmt: skip


@register_model("cnn7", "CNN7-BN of Shi et al. 2021 (64-64-128s2-128-128, fc512); the paper model")
def _cnn7(in_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    return _cnn7_layers(in_shape, num_classes, last_stride=1)


@register_model("cnn7-tin", "CNN7-BN for TinyImageNet: as cnn7 with stride 2 in conv 5 (64x64 -> 16x16)")
def _cnn7_tin(in_shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    return _cnn7_layers(in_shape, num_classes, last_stride=2)


def ibp_init(model: nn.Module) -> nn.Module:
    """IBP initialisation of Shi et al. 2021: redraw conv/linear weights from N(0, σ²), σ = √(2π)/fan_in.

    The final classifier layer (the last Linear) keeps its default initialisation; biases and
    BatchNorm parameters are untouched. Returns the model for chaining.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if not layers:
        return model
    for layer in layers[:-1]:
        fan_in = layer.weight[0].numel()
        with torch.no_grad():
            layer.weight.normal_(0.0, math.sqrt(2 * math.pi) / fan_in)
    return model


def save_model(path: Path | str, model: nn.Module, name: str, in_shape: tuple[int, int, int],
               num_classes: int, mean: Sequence[float], std: Sequence[float], extra: dict | None = None) -> None:
    """Atomically save a zoo model with what is needed to rebuild it (``load_model``)."""
    from actbench.store import atomic_write

    blob = {
        "format": "actbench-model-v1",
        "model_name": name,
        "in_shape": list(in_shape),
        "num_classes": num_classes,
        "mean": list(mean),
        "std": list(std),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))


def load_model(path: Path | str, map_location: str | torch.device = "cpu") -> tuple[nn.Sequential, dict]:
    """Rebuild a model saved by ``save_model``; returns ``(model in eval mode, metadata)``.

    Raises :class:`CheckpointError` for a missing, corrupt or incompatible file.
    """
    from actbench.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no model checkpoint at {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != "actbench-model-v1":
        raise CheckpointError(f"{path} is not an actbench model checkpoint")
    model = create_model(blob["model_name"], tuple(blob["in_shape"]), blob["num_classes"], blob["mean"], blob["std"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match model {blob['model_name']}: {exc}") from exc
    model.eval()
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    return model, meta
