"""A verification problem: a model compiled to float64 layers, an input box and a specification.

The specification is a set of rows ``C z + d`` over the logits ``z``; the property holds on the box when
every row is strictly positive everywhere in it. Local robustness of label ``y`` is ``C = e_y - e_t`` for
every ``t != y`` and ``d = 0`` (a tie counts as a violation). Everything the complete verifiers compute
runs on :class:`LayerNet`'s layers; counterexamples are judged by the model itself (a float64 copy in
eval mode), so a bug in the layer conversion cannot produce a false ``falsified`` either.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from actbench.bounds import batchnorm
from actbench.bounds.api import spec_matrix
from actbench.bounds.network import (
    AvgPoolLayer,
    ChannelAffineLayer,
    ConvLayer,
    FlattenLayer,
    Layer,
    LinearLayer,
    Network,
    ReLULayer,
    Shape,
    build_network,
    infer_shapes,
    materialize,
)
from actbench.errors import InvalidInput, UnsupportedLayer

AFFINE = (LinearLayer, ConvLayer, ChannelAffineLayer, FlattenLayer, AvgPoolLayer)


@dataclass
class LayerNet:
    """A model as float64 layers: affine maps and ReLUs (BatchNorm folded with its running statistics).

    ``shapes[i]`` is the per-sample input shape of ``layers[i]`` (the output shape last); ``relus`` the
    positions of the ReLU layers; ``model`` a float64 eval copy used to check counterexamples.
    """

    layers: list[Layer]
    shapes: list[Shape]
    relus: list[int]
    model: nn.Module
    dtype: torch.dtype
    _fast: nn.Module | None = field(default=None, repr=False)
    _casts: dict[torch.dtype, LayerNet] = field(default_factory=dict, repr=False)

    @property
    def in_shape(self) -> Shape:
        return self.shapes[0]

    @property
    def num_outputs(self) -> int:
        return self.shapes[-1][0]

    def relu_shape(self, k: int) -> Shape:
        """Per-sample shape of the pre-activation of ReLU ``k``."""
        return self.shapes[self.relus[k]]

    def relu_size(self, k: int) -> int:
        return math.prod(self.relu_shape(k))

    def pre_activations(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Pre-activations of every ReLU and the logits for inputs ``x`` ``[N, *in]`` (layer arithmetic)."""
        pre: list[torch.Tensor] = []
        h = x
        for layer in self.layers:
            if isinstance(layer, ReLULayer):
                pre.append(h)
                h = torch.relu(h)
            else:
                h = layer.forward(h)
        return pre, h

    def cast(self, dtype: torch.dtype) -> LayerNet:
        """The same network with its layers in ``dtype`` (float32 for optimisation steps; every bound
        that decides anything is recomputed with the float64 layers)."""
        if dtype == self.dtype:
            return self
        if dtype in self._casts:
            return self._casts[dtype]
        device = next((t.device for t in self.model.parameters()), torch.device("cpu"))
        layers = [layer.cast(dtype, device) for layer in self.layers]
        infer_shapes(Network(layers), self.in_shape)  # records the conv input shapes
        self._casts[dtype] = LayerNet(layers, self.shapes, self.relus, self.model, self.dtype, self._fast)
        return self._casts[dtype]

    def fast_model(self) -> nn.Module:
        """A float32 copy of the model, for attack iterations (never for judging a point)."""
        if self._fast is None:
            self._fast = copy.deepcopy(self.model).float()
        return self._fast

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's own float64 forward pass (the judge of every counterexample)."""
        return self.model(x.to(self.dtype))


def compile_model(model: nn.Module, in_shape: Shape, dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> LayerNet:
    """Compile ``model`` (any train/eval state; it is copied, not modified) for complete verification."""
    if not isinstance(model, nn.Module):
        raise InvalidInput(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = torch.device(device)
    net64 = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    for p in net64.parameters():
        p.requires_grad_(False)
    net: Network = build_network(net64)
    shapes = infer_shapes(net, tuple(in_shape))
    if len(shapes[-1]) != 1 or shapes[-1][0] < 1:
        raise InvalidInput(f"the model must output [B, K] logits, got per-sample shape {shapes[-1]}")
    layers = materialize(net, shapes, batchnorm.affine_provider(None), dtype, device, 1)
    for layer in layers:
        if not isinstance(layer, (ReLULayer, *AFFINE)):
            raise UnsupportedLayer(f"{layer.name}: the complete verifiers (alpha-crown, bab, milp) support "
                                   "Linear, Conv2d, BatchNorm, Normalize, Flatten, AvgPool2d and ReLU only")
    layer_shapes = infer_shapes(Network(layers), tuple(in_shape))
    relus = [i for i, layer in enumerate(layers) if isinstance(layer, ReLULayer)]
    return LayerNet(layers, layer_shapes, relus, net64, dtype)


@dataclass
class Spec:
    """Rows ``C z + d`` that must all be > 0 on the box: ``C`` ``[B, S, K]``, ``d`` ``[B, S]``."""

    C: torch.Tensor
    d: torch.Tensor

    @property
    def rows(self) -> int:
        return self.C.shape[1]

    def values(self, logits: torch.Tensor) -> torch.Tensor:
        """Row values ``[B, S]`` for logits ``[B, K]``."""
        return torch.einsum("bsk,bk->bs", self.C, logits) + self.d

    def select(self, idx: torch.Tensor) -> Spec:
        return Spec(self.C[idx], self.d[idx])


def robustness_spec(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float64) -> Spec:
    """Margins ``z_y - z_t`` for every ``t != y`` (in increasing ``t``), ``d = 0``."""
    C = spec_matrix(y, num_classes, dtype)
    return Spec(C, torch.zeros(C.shape[:2], dtype=dtype, device=C.device))


def check_box(lower: torch.Tensor, upper: torch.Tensor, in_shape: Shape | None = None) -> None:
    """Raise InvalidInput unless ``[lower, upper]`` is a finite, non-empty box ``[B, *in]``."""
    for t, what in ((lower, "lower"), (upper, "upper")):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise InvalidInput(f"{what} must be a floating-point torch.Tensor, got {type(t).__name__}")
    if lower.shape != upper.shape:
        raise InvalidInput(f"lower and upper must have the same shape, got {tuple(lower.shape)} and "
                           f"{tuple(upper.shape)}")
    if in_shape is not None and tuple(lower.shape[1:]) != tuple(in_shape):
        raise InvalidInput(f"the box must have shape [B, {', '.join(map(str, in_shape))}], got {tuple(lower.shape)}")
    if not bool(torch.isfinite(lower).all() and torch.isfinite(upper).all()) or bool((lower > upper).any()):
        raise InvalidInput("the box must be finite with lower <= upper everywhere")
