"""Turn a supported ``nn.Module`` into a flat list of layers the bound domains understand.

Every layer except ReLU is an affine map, exposed through four primitives that both domains use:

- ``forward(x)``        the map itself, ``W x + b``;
- ``forward_abs(r)``    ``|W| r`` (no bias), the radius step of IBP;
- ``backward(A)``       ``A W`` for coefficient rows ``A`` of shape ``[B, S, *out_shape]`` (CROWN);
- ``bias_term(A)``      ``A b`` summed per row, shape ``[B, S]``.

BatchNorm is kept symbolic (:class:`BatchNormLayer`) until :func:`materialize` turns it into an exact
per-channel affine map with the chosen statistics (running or batch, see ``batchnorm.py``), fusing it
into the preceding Linear/Conv2d where there is one. The list is flat today; a residual block would be
one more layer kind holding two sub-lists, without changing the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from actbench.errors import InvalidInput, UnsupportedLayer
from actbench.models import Normalize

Shape = tuple[int, ...]
CONV_BACKWARD_CHANNELS_LAST = True
FOLD_MAX_COLUMNS = 64  # ConvLayer.backward uses F.fold when in_channels * kernel area is at most this
SMALL_CONV_BATCH = 8  # convolutions of at most this many samples (no autograd, CPU) bypass oneDNN
BNAffine = Callable[["BatchNormLayer", torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]]


def _to(t: torch.Tensor | None, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device=device, dtype=dtype)


def _name(module: nn.Module, path: str) -> str:
    return f"{path or '<model>'} ({type(module).__name__})"


class Layer:
    """Base class. ``name`` says where the layer sits in the model, for error messages."""

    name: str = ""

    def out_shape(self, in_shape: Shape) -> Shape:
        """Per-sample output shape for a per-sample input shape (raises InvalidInput on mismatch)."""
        return in_shape

    @property
    def is_diagonal(self) -> bool:
        """True when each output depends on one input only (then IBP through it is exact)."""
        return False

    def cast(self, dtype: torch.dtype, device: torch.device) -> Layer:
        """This layer with its parameters in ``dtype`` on ``device`` (self when nothing to convert)."""
        return self


class ReLULayer(Layer):
    """The only non-linear layer; handled by each domain's relaxation."""

    def __init__(self, name: str):
        self.name = name


class FlattenLayer(Layer):
    """A reshape: exact in every domain. Dims are those of ``nn.Flatten`` (batch dimension included)."""

    def __init__(self, start_dim: int, end_dim: int, name: str):
        self.start_dim, self.end_dim, self.name = start_dim, end_dim, name
        self.in_shape: Shape = ()

    def out_shape(self, in_shape: Shape) -> Shape:
        self.in_shape = in_shape
        return tuple(torch.empty((1, *in_shape), device="meta").flatten(self.start_dim, self.end_dim).shape[1:])

    @property
    def is_diagonal(self) -> bool:
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(self.start_dim, self.end_dim)

    forward_abs = forward

    def backward(self, A: torch.Tensor) -> torch.Tensor:
        return A.reshape(*A.shape[:2], *self.in_shape)

    def bias_term(self, A: torch.Tensor) -> None:
        return None


class ChannelAffineLayer(Layer):
    """``x * scale[c] + shift[c]`` along channel dim 1: Normalize and BatchNorm (eval or given stats)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, name: str):
        self.scale, self.shift, self.name = scale, shift, name
        self._abs: torch.Tensor | None = None

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) < 1 or in_shape[0] != self.scale.numel():
            raise InvalidInput(f"{self.name}: expects {self.scale.numel()} channels, got input shape {in_shape}")
        return in_shape

    @property
    def is_diagonal(self) -> bool:
        return True

    def cast(self, dtype: torch.dtype, device: torch.device) -> ChannelAffineLayer:
        return ChannelAffineLayer(_to(self.scale, dtype, device), _to(self.shift, dtype, device), self.name)

    def _view(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        return t.view(-1, *([1] * (ndim - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self._view(self.shift, x.dim()), x, self._view(self.scale, x.dim()))

    def forward_abs(self, r: torch.Tensor) -> torch.Tensor:
        if self._abs is None:
            self._abs = self.scale.abs()
        return r * self._view(self._abs, r.dim())

    def backward(self, A: torch.Tensor) -> torch.Tensor:
        return A * self._view(self.scale, A.dim() - 1)

    def bias_term(self, A: torch.Tensor) -> torch.Tensor:
        per_channel = A.flatten(3).sum(-1) if A.dim() > 3 else A
        return per_channel @ self.shift


class NormalizeLayer(ChannelAffineLayer):
    """``(x - mean) / std`` as a channel affine map, computed in the target dtype."""

    def __init__(self, module: Normalize, name: str):
        self.module = module
        super().__init__(*self._affine(torch.float32, module.std.device), name)

    def _affine(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        std = self.module.std.flatten().to(device=device, dtype=dtype)
        mean = self.module.mean.flatten().to(device=device, dtype=dtype)
        return 1.0 / std, -mean / std

    def cast(self, dtype: torch.dtype, device: torch.device) -> ChannelAffineLayer:
        return ChannelAffineLayer(*self._affine(dtype, device), self.name)


class LinearLayer(Layer):
    """``F.linear`` on the last dimension."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, name: str):
        self.weight, self.bias, self.name = weight, bias, name
        self._abs: torch.Tensor | None = None

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) < 1 or in_shape[-1] != self.weight.shape[1]:
            raise InvalidInput(f"{self.name}: expects {self.weight.shape[1]} input features, got shape {in_shape}")
        return (*in_shape[:-1], self.weight.shape[0])

    def abs_weight(self) -> torch.Tensor:
        if self._abs is None:
            self._abs = self.weight.abs()
        return self._abs

    def cast(self, dtype: torch.dtype, device: torch.device) -> LinearLayer:
        return LinearLayer(_to(self.weight, dtype, device), _to(self.bias, dtype, device), self.name)

    def fuse(self, scale: torch.Tensor, shift: torch.Tensor) -> LinearLayer:
        """This layer followed by ``x * scale + shift`` on its output features, as one layer."""
        bias = shift if self.bias is None else self.bias * scale + shift
        return LinearLayer(self.weight * scale[:, None], bias, self.name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def forward_abs(self, r: torch.Tensor) -> torch.Tensor:
        return F.linear(r, self.abs_weight())

    def backward(self, A: torch.Tensor) -> torch.Tensor:
        return A @ self.weight

    def bias_term(self, A: torch.Tensor) -> torch.Tensor | None:
        if self.bias is None:
            return None
        out = A @ self.bias
        return out.flatten(2).sum(-1) if out.dim() > 2 else out


class ConvLayer(Layer):
    """``F.conv2d`` with zero padding; its transpose is ``conv_transpose2d`` with matching output_padding."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: Shape, padding: Shape,
                 dilation: Shape, groups: int, name: str):
        self.weight, self.bias, self.name = weight, bias, name
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.in_shape: Shape = ()
        self._abs: torch.Tensor | None = None

    def out_shape(self, in_shape: Shape) -> Shape:
        cin = self.weight.shape[1] * self.groups
        if len(in_shape) != 3 or in_shape[0] != cin:
            raise InvalidInput(f"{self.name}: expects input [{cin}, H, W] per sample, got {in_shape}")
        self.in_shape = in_shape
        size = []
        for d in range(2):
            k = self.dilation[d] * (self.weight.shape[2 + d] - 1) + 1
            n = (in_shape[1 + d] + 2 * self.padding[d] - k) // self.stride[d] + 1
            if n < 1:
                raise InvalidInput(f"{self.name}: input {in_shape} is too small for the kernel")
            size.append(n)
        return (self.weight.shape[0], *size)

    def abs_weight(self) -> torch.Tensor:
        if self._abs is None:
            self._abs = self.weight.abs()
        return self._abs

    def cast(self, dtype: torch.dtype, device: torch.device) -> ConvLayer:
        return ConvLayer(_to(self.weight, dtype, device), _to(self.bias, dtype, device), self.stride,
                         self.padding, self.dilation, self.groups, self.name)

    def fuse(self, scale: torch.Tensor, shift: torch.Tensor) -> ConvLayer:
        """This convolution followed by the per-channel ``x * scale + shift``, as one convolution."""
        bias = shift if self.bias is None else self.bias * scale + shift
        return ConvLayer(self.weight * scale.view(-1, 1, 1, 1), bias, self.stride, self.padding, self.dilation,
                         self.groups, self.name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def forward_abs(self, r: torch.Tensor) -> torch.Tensor:
        return _conv2d(r, self.abs_weight(), None, self.stride, self.padding, self.dilation, self.groups)

    def _output_padding(self, out_hw: Shape) -> Shape:
        """The ``output_padding`` that makes the transpose restore the recorded input size."""
        pad = []
        for d, n_out in enumerate(out_hw):
            k = self.dilation[d] * (self.weight.shape[2 + d] - 1) + 1
            covered = (n_out - 1) * self.stride[d] - 2 * self.padding[d] + k
            pad.append(self.in_shape[1 + d] - covered)
        return tuple(pad)

    def backward(self, A: torch.Tensor) -> torch.Tensor:
        """``A W`` by a transposed convolution; rows stay in (or move to) channels-last memory order,
        in which oneDNN's transposed convolution runs fastest. Few input channels (the first layer):
        ``W^T A`` as one matrix product and ``F.fold``, much faster than a transposed convolution
        that writes 1-3 channels."""
        b, s = A.shape[:2]
        flat = A.reshape(b * s, *A.shape[2:])
        cin, k_h, k_w = self.weight.shape[1:]
        if self.groups == 1 and cin * k_h * k_w <= FOLD_MAX_COLUMNS:
            out = self._backward_fold(flat)
        else:
            if CONV_BACKWARD_CHANNELS_LAST:
                flat = flat.contiguous(memory_format=torch.channels_last)
            out = F.conv_transpose2d(flat, self.weight, None, self.stride, self.padding,
                                     self._output_padding(A.shape[-2:]), self.groups, self.dilation)
        return out.view(b, s, *out.shape[1:])

    def _backward_fold(self, A: torch.Tensor) -> torch.Tensor:
        """Transposed convolution as ``cols = W^T A`` (per output position) and col2im (``F.fold``)."""
        n, cout = A.shape[:2]
        cols = torch.matmul(self.weight.reshape(cout, -1).t(), A.reshape(n, cout, -1))  # [n, cin * k * k, L]
        return F.fold(cols, self.in_shape[1:], self.weight.shape[2:], self.dilation, self.padding, self.stride)

    def bias_term(self, A: torch.Tensor) -> torch.Tensor | None:
        if self.bias is None:
            return None
        return A.sum((3, 4)) @ self.bias


def _conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Shape, padding: Shape,
            dilation: Shape, groups: int) -> torch.Tensor:
    """``F.conv2d``; a CPU batch of at most ``SMALL_CONV_BATCH`` without autograd skips oneDNN, whose
    fixed cost per call (~50 us) is several times the arithmetic of so few samples (the last rounds
    of a radius search)."""
    small = x.shape[0] <= SMALL_CONV_BATCH and x.device.type == "cpu" and not torch.is_grad_enabled()
    if not (small and torch.backends.mkldnn.enabled):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    torch.backends.mkldnn.enabled = False
    try:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    finally:
        torch.backends.mkldnn.enabled = True


class AvgPoolLayer(Layer):
    """``F.avg_pool2d`` (kernel with equal positive weights); transpose via a depthwise conv_transpose2d."""

    def __init__(self, kernel: Shape, stride: Shape, padding: Shape, name: str):
        self.kernel, self.stride, self.padding, self.name = kernel, stride, padding, name
        self.in_shape: Shape = ()

    def out_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise InvalidInput(f"{self.name}: expects input [C, H, W] per sample, got {in_shape}")
        self.in_shape = in_shape
        size = [(in_shape[1 + d] + 2 * self.padding[d] - self.kernel[d]) // self.stride[d] + 1 for d in range(2)]
        if min(size) < 1:
            raise InvalidInput(f"{self.name}: input {in_shape} is too small for the kernel")
        return (in_shape[0], *size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, ceil_mode=False, count_include_pad=True)

    forward_abs = forward  # all weights are positive

    def backward(self, A: torch.Tensor) -> torch.Tensor:
        b, s, c = A.shape[:3]
        weight = A.new_full((c, 1, *self.kernel), 1.0 / math.prod(self.kernel))
        conv = ConvLayer(weight, None, self.stride, self.padding, (1, 1), c, self.name)
        conv.in_shape = self.in_shape
        return conv.backward(A)

    def bias_term(self, A: torch.Tensor) -> None:
        return None


class BatchNormLayer(Layer):
    """Placeholder for a BatchNorm module; ``materialize`` replaces it by a ChannelAffineLayer."""

    def __init__(self, module: nn.BatchNorm1d | nn.BatchNorm2d, name: str):
        self.module, self.name = module, name

    def out_shape(self, in_shape: Shape) -> Shape:
        c = self.module.num_features
        if len(in_shape) < 1 or in_shape[0] != c:
            raise InvalidInput(f"{self.name}: expects {c} channels, got input shape {in_shape}")
        return in_shape

    @property
    def needs_batch_stats(self) -> bool:
        """True when PyTorch's own forward would normalise with the batch statistics."""
        return self.module.training or self.module.running_mean is None


@dataclass
class Network:
    """A model as a flat list of layers (containers and identities removed)."""

    layers: list[Layer]

    @property
    def batchnorms(self) -> list[BatchNormLayer]:
        return [layer for layer in self.layers if isinstance(layer, BatchNormLayer)]


def _pair(v: int | Shape) -> Shape:
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_layer(m: nn.Conv2d, name: str) -> ConvLayer:
    if m.padding_mode != "zeros":
        raise UnsupportedLayer(f"{name}: padding_mode={m.padding_mode!r} is not supported (use 'zeros')")
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        else:  # 'same': symmetric only when every dilated kernel extent is odd
            total = [m.dilation[d] * (m.kernel_size[d] - 1) for d in range(2)]
            if any(t % 2 for t in total):
                raise UnsupportedLayer(f"{name}: padding='same' with an even kernel pads asymmetrically")
            padding = (total[0] // 2, total[1] // 2)
    return ConvLayer(m.weight, m.bias, _pair(m.stride), _pair(padding), _pair(m.dilation), m.groups, name)


def _avgpool_layer(m: nn.AvgPool2d, name: str) -> AvgPoolLayer:
    padding = _pair(m.padding)
    if m.ceil_mode or m.divisor_override is not None or (not m.count_include_pad and any(padding)):
        raise UnsupportedLayer(f"{name}: only AvgPool2d with ceil_mode=False, count_include_pad=True "
                               "(or no padding) and no divisor_override is supported")
    kernel = _pair(m.kernel_size)
    stride = kernel if m.stride is None else _pair(m.stride)
    return AvgPoolLayer(kernel, stride, padding, name)


def _collect(module: nn.Module, path: str, out: list[Layer]) -> None:
    name = _name(module, path)
    if isinstance(module, nn.Sequential):
        for child_name, child in module.named_children():
            _collect(child, f"{path}.{child_name}" if path else child_name, out)
    elif isinstance(module, nn.Identity | nn.Dropout):
        # Dropout is dropped in train mode too: bounds describe the deterministic network.
        return
    elif isinstance(module, Normalize):
        out.append(NormalizeLayer(module, name))
    elif isinstance(module, nn.Linear):
        out.append(LinearLayer(module.weight, module.bias, name))
    elif isinstance(module, nn.Conv2d):
        out.append(_conv_layer(module, name))
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        out.append(BatchNormLayer(module, name))
    elif isinstance(module, nn.ReLU):
        out.append(ReLULayer(name))
    elif isinstance(module, nn.Flatten):
        if module.start_dim == 0:
            raise UnsupportedLayer(f"{name}: Flatten over the batch dimension is not supported")
        out.append(FlattenLayer(module.start_dim, module.end_dim, name))
    elif isinstance(module, nn.AvgPool2d):
        out.append(_avgpool_layer(module, name))
    elif isinstance(module, nn.MaxPool2d):
        from actbench.bounds.maxpool import maxpool_layer  # its own module: MaxPool is non-linear

        out.append(maxpool_layer(module, name))
    else:
        raise UnsupportedLayer(
            f"the bound engine has no rule for {name}; supported: Normalize, Conv2d, Linear, ReLU, "
            "BatchNorm1d/2d, Flatten, AvgPool2d, MaxPool2d, Identity, Dropout and nested nn.Sequential"
        )


def build_network(model: nn.Module) -> Network:
    """Flatten ``model`` into a :class:`Network`, or raise :class:`UnsupportedLayer` naming the culprit."""
    if not isinstance(model, nn.Module):
        raise InvalidInput(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers: list[Layer] = []
    _collect(model, "", layers)
    seen: set[int] = set()
    for layer in layers:
        if isinstance(layer, BatchNormLayer):
            if id(layer.module) in seen:
                raise UnsupportedLayer(f"{layer.name}: the same BatchNorm module is used twice")
            seen.add(id(layer.module))
    return Network(layers)


def infer_shapes(net: Network, in_shape: Shape) -> list[Shape]:
    """Per-sample input shape of every layer, plus the output shape last; checks the input fits."""
    shapes = [tuple(in_shape)]
    for layer in net.layers:
        shapes.append(layer.out_shape(shapes[-1]))
    return shapes


def materialize(net: Network, shapes: list[Shape], bn_affine: BNAffine, dtype: torch.dtype,
                device: torch.device, batch: int) -> list[Layer]:
    """Concrete layers in ``dtype``: BatchNorm becomes ``bn_affine``'s per-channel map, fused into the
    preceding Linear/Conv2d when that is cheaper (exact; saves passes over the activations, but rescaling
    a weight larger than the batch's activations, like a big classifier layer, would cost more)."""
    out: list[Layer] = []
    for i, layer in enumerate(net.layers):
        if not isinstance(layer, BatchNormLayer):
            out.append(layer.cast(dtype, device))
            continue
        scale, shift = bn_affine(layer, dtype, device)
        prev = out[-1] if out else None
        fusable = isinstance(prev, ConvLayer) or (isinstance(prev, LinearLayer) and len(shapes[i]) == 1)
        if fusable and prev.weight.numel() <= batch * math.prod(shapes[i]):
            out[-1] = prev.fuse(scale, shift)
        else:
            out.append(ChannelAffineLayer(scale, shift, layer.name))
    return out
