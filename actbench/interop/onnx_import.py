"""ONNX import: a feed-forward ONNX graph becomes an ``nn.Sequential`` of the layers the bound engine knows.

The result is an ordinary model (``Normalize``, ``Linear``, ``Conv2d``, ``ReLU``, ``BatchNorm1d/2d``,
``Flatten``, ``AvgPool2d``, ``MaxPool2d``), so ``build_network``, every verifier and the certification
engine work on it unchanged: the engine never sees ONNX.

Supported ONNX ops, in a single chain from the one input to the one output:

- ``Gemm``, ``MatMul`` (a constant right operand) → ``Linear``; ``Conv`` (2-D, symmetric pads) → ``Conv2d``;
- ``Relu``; ``BatchNormalization`` (inference) → ``BatchNorm``; ``AveragePool``/``GlobalAveragePool`` →
  ``AvgPool2d``; ``MaxPool`` → ``MaxPool2d``; ``Flatten`` and ``Reshape`` to a vector → ``Flatten``;
- ``Add``/``Sub``/``Mul``/``Div`` by per-channel constants: the pattern ``Sub(mean)`` then ``Div(std)`` at the
  input becomes ``Normalize(mean, std)`` exactly; a constant right after a ``Linear``/``Conv2d`` is folded
  into its weights and bias (``MatMul`` + ``Add`` is a ``Linear`` with bias); any other per-channel affine
  map becomes an eval-mode ``BatchNorm`` with unit variance, which is exactly ``x * scale + shift``;
- ``Identity`` and ``Dropout`` are dropped; nodes whose inputs are all constants (``Constant``, and the
  ``Shape``/``Gather``/``Concat`` chains that exporters write for ``x.view(x.size(0), -1)``) are evaluated
  with ONNX's reference evaluator.

Anything else (another op, a branch such as a residual ``Add`` of two computed tensors, a constant that
varies within a channel, asymmetric padding) raises :class:`UnsupportedLayer` naming the ONNX node and op.
:func:`load_onnx` also compares the imported model with ``onnxruntime`` on random inputs when it is
installed, so an import that changes the network's function is an error, never a silent wrong certificate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from actbench.errors import InvalidFile, UnsupportedLayer
from actbench.interop.files import read_bytes
from actbench.models import Normalize

SUPPORTED_OPS = (
    "Gemm", "MatMul", "Conv", "Relu", "BatchNormalization", "AveragePool", "GlobalAveragePool", "MaxPool",
    "Flatten", "Reshape", "Add", "Sub", "Mul", "Div", "Identity", "Dropout", "Constant",
)  # fmt: skip
_ELEMENTWISE = ("Add", "Sub", "Mul", "Div")
_FLOAT_TYPES = {1: torch.float32, 11: torch.float64}  # onnx.TensorProto.FLOAT, DOUBLE
CHECK_RTOL = 1e-4


@dataclass
class OnnxNetwork:
    """An imported network: the model (eval mode) and what it expects.

    ``input_shape`` is the per-sample shape of the ONNX input (batch dimension removed); inputs of a
    VNN-LIB property are that tensor flattened in C order. ``check`` says how the import was verified.
    """

    model: nn.Sequential
    input_shape: tuple[int, ...]
    num_outputs: int
    input_name: str
    output_name: str
    source: str = ""
    check: str = "not checked"
    opset: int = 0
    dtype: torch.dtype = torch.float32
    batch: int | None = field(default=None)  # fixed batch size declared by the file, None when symbolic

    @property
    def num_inputs(self) -> int:
        return math.prod(self.input_shape)


def _node_label(node, index: int) -> str:
    return f"ONNX node {node.name or '#' + str(index)!r} (op {node.op_type})"


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pairs(values, label: str, what: str) -> tuple[int, int]:
    values = tuple(int(v) for v in values)
    if len(values) != 2:
        raise UnsupportedLayer(f"{label}: only 2-D {what} are supported, got {list(values)}")
    return values


def _sym_pads(pads, label: str) -> tuple[int, int]:
    pads = [int(p) for p in (pads or [0, 0, 0, 0])]
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise UnsupportedLayer(f"{label}: only symmetric 2-D padding is supported, got pads={pads}")
    return pads[0], pads[1]


def _no_auto_pad(attrs: dict, label: str) -> None:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto not in ("NOTSET", "VALID"):
        raise UnsupportedLayer(f"{label}: auto_pad={auto} is not supported (give explicit symmetric pads)")
    if auto == "VALID":
        attrs["pads"] = [0, 0, 0, 0]


def snap_float32(value: float) -> float:
    """The shortest decimal that is the same float32 (ONNX stores float attributes as float32).

    A BatchNorm epsilon written as 1e-5 comes back as exactly 1e-5, so a model exported by actbench
    re-imports with bit-identical arithmetic; any other value stays within float32 rounding of itself.
    """
    return float(str(np.float32(value)))


class _Importer:
    """Walks the node list once, keeping the current data tensor, its per-sample shape and the modules."""

    def __init__(self, proto, where: str):
        self.proto, self.where = proto, where
        graph = proto.graph
        from onnx import numpy_helper

        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UnsupportedLayer(f"{where}: the network must have exactly one input, it has "
                                   f"{len(inputs)} ({', '.join(i.name for i in inputs)})")  # fmt: skip
        if len(graph.output) != 1:
            raise UnsupportedLayer(f"{where}: the network must have exactly one output, it has {len(graph.output)}")
        value = inputs[0]
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type not in _FLOAT_TYPES:
            raise UnsupportedLayer(f"{where}: input {value.name!r} must be float32 or float64 "
                                   f"(ONNX elem_type {tensor_type.elem_type})")  # fmt: skip
        self.dtype = _FLOAT_TYPES[tensor_type.elem_type]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
            raise InvalidFile(f"{where}: input {value.name!r} must have a batch dimension and fixed sizes for "
                              f"the others, got shape {['?' if d is None else d for d in dims]}")  # fmt: skip
        self.batch: int | None = dims[0] if dims[0] else None
        self.input_name, self.input_shape = value.name, tuple(int(d) for d in dims[1:])
        self.output_name = graph.output[0].name
        self.data, self.shape = value.name, self.input_shape
        self.modules: list[nn.Module] = []
        self.fold_target: nn.Module | None = None  # Linear/Conv2d whose output is the current data tensor
        self.pending: list[tuple[str, np.ndarray, str]] = []  # elementwise ops not yet turned into a module
        self.derived = {value.name}
        self.uses: dict[str, int] = {}
        for node in graph.node:  # a Shape node reads only the static shape: not a use of the values
            for name in node.input if node.op_type != "Shape" else ():
                self.uses[name] = self.uses.get(name, 0) + 1
        for out in graph.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        self.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)

    # -- the walk --------------------------------------------------------------------------------------

    def run(self) -> OnnxNetwork:
        for index, node in enumerate(self.proto.graph.node):
            self.node(node, _node_label(node, index))
        self.flush()
        if self.data != self.output_name:
            raise UnsupportedLayer(f"{self.where}: the output {self.output_name!r} is not computed from the input "
                                   "by a single chain of supported nodes")  # fmt: skip
        if len(self.shape) != 1 or self.shape[0] < 2:
            raise UnsupportedLayer(f"{self.where}: the network must output [batch, K] scores with K >= 2, got "
                                   f"per-sample shape {self.shape}")  # fmt: skip
        model = nn.Sequential(*self.modules).to(self.dtype).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return OnnxNetwork(model, self.input_shape, self.shape[0], self.input_name, self.output_name, self.where,
                           opset=self.opset, dtype=self.dtype, batch=self.batch)  # fmt: skip

    def node(self, node, label: str) -> None:
        inputs = [name for name in node.input if name]
        data_inputs = [name for name in inputs if name in self.derived]
        if not data_inputs:
            self.fold_constants(node, label)
            return
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedLayer(f"{label}: custom domain {node.domain!r} is not supported")
        if len(data_inputs) > 1 or data_inputs[0] != self.data:
            raise UnsupportedLayer(f"{label}: combines computed tensors or branches off the main chain "
                                   "(residual connections and other graphs are not supported)")  # fmt: skip
        if node.op_type == "Shape":
            self.fold_constants(node, label, feeds={self.data: np.zeros((self.batch or 1, *self.shape))})
            return
        if self.uses.get(self.data, 0) > 1:
            raise UnsupportedLayer(f"{label}: tensor {self.data!r} is used by several nodes (branching graphs "
                                   "such as residual connections are not supported)")  # fmt: skip
        for extra in node.output[1:]:
            if extra and self.uses.get(extra, 0):
                raise UnsupportedLayer(f"{label}: its output {extra!r} is used; only the first output is supported")
        op = node.op_type
        if op in _ELEMENTWISE:
            self.elementwise(node, label)
        else:
            self.flush()
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                raise UnsupportedLayer(
                    f"{label} is not supported by the bound engine; supported ops: {', '.join(SUPPORTED_OPS)}")
            handler(node, label, _attrs(node))
        self.data = node.output[0]
        self.derived.add(self.data)

    def const(self, name: str, label: str) -> np.ndarray:
        if name not in self.consts:
            raise UnsupportedLayer(f"{label}: operand {name!r} must be a constant (an initializer)")
        return self.consts[name]

    def fold_constants(self, node, label: str, feeds: dict[str, np.ndarray] | None = None) -> None:
        """Evaluate a node whose inputs are all known (constants, or a shape) with ONNX's reference evaluator."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        feeds = dict(feeds or {})
        for name in node.input:
            if name and name not in feeds:
                feeds[name] = self.const(name, label)
        graph = helper.make_graph(
            [node], "fold", [helper.make_tensor_value_info(n, 1, None) for n in feeds],
            [helper.make_tensor_value_info(o, 1, None) for o in node.output if o],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=list(self.proto.opset_import))
        try:
            outputs = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:  # noqa: BLE001 - the reference evaluator raises many types
            raise UnsupportedLayer(f"{label}: cannot evaluate this constant node "
                                   f"({type(exc).__name__}: {exc})") from exc  # fmt: skip
        for name, value in zip([o for o in node.output if o], outputs, strict=True):
            self.consts[name] = np.asarray(value)

    def add(self, module: nn.Module, label: str) -> None:
        """Append a module and compute the new per-sample shape (a mismatch is the file's fault)."""
        with torch.no_grad():
            try:
                out = module.to(self.dtype)(torch.zeros(1, *self.shape, dtype=self.dtype))
            except RuntimeError as exc:
                raise InvalidFile(f"{label}: does not fit its input of per-sample shape {self.shape} ({exc})") from exc
        self.modules.append(module)
        self.shape = tuple(out.shape[1:])
        self.fold_target = module if isinstance(module, nn.Linear | nn.Conv2d) else None

    def param(self, value: np.ndarray) -> nn.Parameter:
        return nn.Parameter(torch.from_numpy(np.array(value, copy=True)).to(self.dtype), requires_grad=False)

    # -- elementwise constants --------------------------------------------------------------------------

    def elementwise(self, node, label: str) -> None:
        a, b = node.input[0], node.input[1]
        data_first = a == self.data
        const = self.const(b if data_first else a, label)
        if node.op_type == "Div" and not data_first:
            raise UnsupportedLayer(f"{label}: dividing a constant by the data is not an affine map")
        self.pending.append((node.op_type if data_first or node.op_type != "Sub" else "RSub",
                             self.per_channel(const, label), label))  # fmt: skip

    def per_channel(self, const: np.ndarray, label: str) -> np.ndarray:
        """The constant as one value per channel (dim 1 of the data), or UnsupportedLayer."""
        full = (1, *self.shape)
        try:
            shape = np.broadcast_shapes(const.shape, full)
        except ValueError:
            raise UnsupportedLayer(f"{label}: constant of shape {list(const.shape)} does not broadcast to the data "
                                   f"{list(full)}") from None  # fmt: skip
        if tuple(shape) != full:
            raise UnsupportedLayer(f"{label}: constant of shape {list(const.shape)} would enlarge the data "
                                   f"{list(full)}")  # fmt: skip
        per = np.broadcast_to(const, full).reshape(self.shape[0], -1)
        if not bool((per == per[:, :1]).all()):
            raise UnsupportedLayer(f"{label}: constant of shape {list(const.shape)} varies within a channel; only "
                                   "scalar and per-channel constants are supported")  # fmt: skip
        return np.ascontiguousarray(per[:, 0])

    def flush(self) -> None:
        """Turn the pending elementwise ops into Normalize, a fold into the previous layer, or a BatchNorm."""
        if not self.pending:
            return
        ops, self.pending = self.pending, []
        label = ops[0][2]
        kinds = [op for op, _, _ in ops]
        channels = self.shape[0]
        if not self.modules and len(self.shape) == 3 and kinds in (["Sub"], ["Div"], ["Sub", "Div"]):
            mean = ops[0][1] if kinds[0] == "Sub" else np.zeros(channels, dtype=np.float32)
            std = ops[-1][1] if kinds[-1] == "Div" else np.ones(channels, dtype=np.float32)
            if bool((std > 0).all()):
                self.add(Normalize([float(v) for v in mean], [float(v) for v in std]), label)
                return
        scale, shift = np.ones(channels), np.zeros(channels)
        for op, value, where in ops:
            value = value.astype(np.float64)
            if op == "Add":
                shift = shift + value
            elif op == "Sub":
                shift = shift - value
            elif op == "RSub":
                scale, shift = -scale, value - shift
            elif op == "Mul":
                scale, shift = scale * value, shift * value
            else:
                if bool((value == 0).any()):
                    raise UnsupportedLayer(f"{where}: division by zero")
                scale, shift = scale / value, shift / value
        target = self.fold_target
        if target is not None:
            with torch.no_grad():
                s = torch.as_tensor(scale, dtype=torch.float64)
                view = (-1, *([1] * (target.weight.dim() - 1)))
                target.weight.copy_((target.weight.double() * s.view(view)).to(self.dtype))
                bias = torch.as_tensor(shift, dtype=torch.float64)
                if target.bias is not None:
                    bias = bias + target.bias.double() * s
                if target.bias is None and bool((bias != 0).any()):
                    target.bias = self.param(bias.numpy())
                elif target.bias is not None:
                    target.bias.copy_(bias.to(self.dtype))
            return
        bn = (nn.BatchNorm2d if len(self.shape) == 3 else nn.BatchNorm1d)(channels, eps=0.0)
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(np.array(scale, dtype=np.float64)))
            bn.bias.copy_(torch.from_numpy(np.array(shift, dtype=np.float64)))
        self.add(bn.eval(), label)

    # -- layers -----------------------------------------------------------------------------------------

    def op_Relu(self, node, label: str, attrs: dict) -> None:
        self.add(nn.ReLU(), label)

    def op_Identity(self, node, label: str, attrs: dict) -> None:
        return

    def op_Dropout(self, node, label: str, attrs: dict) -> None:
        if len(node.input) > 2 and node.input[2] and bool(np.asarray(self.const(node.input[2], label)).any()):
            raise UnsupportedLayer(f"{label}: training_mode=true is not supported")

    def op_Flatten(self, node, label: str, attrs: dict) -> None:
        rank = len(self.shape) + 1
        axis = int(attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis < 1 or math.prod(self.shape[: axis - 1]) != 1:
            raise UnsupportedLayer(f"{label}: Flatten with axis={attrs.get('axis', 1)} merges the batch dimension")
        if len(self.shape) > 1:
            self.add(nn.Flatten(), label)

    def op_Reshape(self, node, label: str, attrs: dict) -> None:
        target = [int(v) for v in np.asarray(self.const(node.input[1], label)).reshape(-1)]
        full = (self.batch or 1, *self.shape)
        if not attrs.get("allowzero", 0):
            target = [full[i] if v == 0 and i < len(full) else v for i, v in enumerate(target)]
        try:
            out = np.empty(full, dtype=np.int8).reshape(target).shape
        except ValueError as exc:
            raise InvalidFile(f"{label}: cannot reshape {list(full)} to {target} ({exc})") from None
        if len(out) < 2 or out[0] != full[0]:
            raise UnsupportedLayer(f"{label}: Reshape to {target} changes the batch dimension")
        if tuple(out[1:]) == self.shape:
            return
        if len(out) != 2:
            raise UnsupportedLayer(f"{label}: Reshape of per-sample shape {list(self.shape)} to {list(out[1:])} is "
                                   "not supported (only reshapes to a vector)")  # fmt: skip
        self.add(nn.Flatten(), label)

    def op_Gemm(self, node, label: str, attrs: dict) -> None:
        if attrs.get("transA", 0):
            raise UnsupportedLayer(f"{label}: transA=1 is not supported")
        if len(self.shape) != 1:
            raise UnsupportedLayer(f"{label}: Gemm needs [batch, features] data, got per-sample {self.shape}")
        weight = np.asarray(self.const(node.input[1], label), dtype=np.float64)
        weight = weight if attrs.get("transB", 0) else weight.T
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        bias = None
        if len(node.input) > 2 and node.input[2] and beta != 0:
            c = np.asarray(self.const(node.input[2], label), dtype=np.float64)
            try:
                bias = beta * np.broadcast_to(c, (1, weight.shape[0]))[0]
            except ValueError:
                raise InvalidFile(f"{label}: bias of shape {list(c.shape)} does not fit {weight.shape[0]} "
                                  "outputs") from None  # fmt: skip
        self.linear(weight * alpha if alpha != 1.0 else weight, bias, label, node)

    def op_MatMul(self, node, label: str, attrs: dict) -> None:
        if node.input[0] != self.data:
            raise UnsupportedLayer(f"{label}: only data @ constant is supported")
        if len(self.shape) != 1:
            raise UnsupportedLayer(f"{label}: MatMul needs [batch, features] data, got per-sample {self.shape}")
        weight = np.asarray(self.const(node.input[1], label))
        if weight.ndim != 2:
            raise UnsupportedLayer(f"{label}: MatMul by a constant of rank {weight.ndim} is not supported")
        self.linear(weight.T, None, label, node)

    def linear(self, weight: np.ndarray, bias: np.ndarray | None, label: str, node) -> None:
        if weight.ndim != 2 or weight.shape[1] != self.shape[0]:
            raise InvalidFile(f"{label}: weight of shape {list(weight.shape)} does not fit {self.shape[0]} input "
                              "features")  # fmt: skip
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")  # no random init
        layer.weight = self.param(weight)
        if bias is not None:
            layer.bias = self.param(bias)
        self.add(layer, label)

    def op_Conv(self, node, label: str, attrs: dict) -> None:
        weight = np.asarray(self.const(node.input[1], label))
        if weight.ndim != 4 or len(self.shape) != 3:
            raise UnsupportedLayer(f"{label}: only 2-D convolutions of [C, H, W] data are supported")
        _no_auto_pad(attrs, label)
        groups = int(attrs.get("group", 1))
        kernel = _pairs(attrs.get("kernel_shape", weight.shape[2:]), label, "kernels")
        if kernel != tuple(weight.shape[2:]):
            raise InvalidFile(f"{label}: kernel_shape {list(kernel)} differs from the weight's "
                              f"{list(weight.shape[2:])}")  # fmt: skip
        stride = _pairs(attrs.get("strides", [1, 1]), label, "strides")
        dilation = _pairs(attrs.get("dilations", [1, 1]), label, "dilations")
        padding = _sym_pads(attrs.get("pads"), label)
        has_bias = len(node.input) > 2 and bool(node.input[2])
        conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], kernel, stride, padding, dilation, groups,
                         bias=has_bias, device="meta")  # fmt: skip
        conv.weight = self.param(weight)
        if has_bias:
            conv.bias = self.param(np.asarray(self.const(node.input[2], label)).reshape(-1))
        self.add(conv, label)

    def op_BatchNormalization(self, node, label: str, attrs: dict) -> None:
        if attrs.get("training_mode", 0):
            raise UnsupportedLayer(f"{label}: training_mode=1 is not supported (export the model in eval mode)")
        scale, bias, mean, var = (np.array(self.const(n, label), dtype=np.float64).reshape(-1)
                                  for n in node.input[1:5])  # fmt: skip
        channels = self.shape[0]
        if not all(v.shape == (channels,) for v in (scale, bias, mean, var)):
            raise InvalidFile(f"{label}: parameters do not have {channels} channels")
        if len(self.shape) not in (1, 2, 3):
            raise UnsupportedLayer(f"{label}: BatchNormalization of per-sample rank {len(self.shape)}")
        eps = snap_float32(attrs.get("epsilon", 1e-5))
        bn = (nn.BatchNorm2d if len(self.shape) == 3 else nn.BatchNorm1d)(channels, eps=eps)
        with torch.no_grad():
            for tensor, value in ((bn.weight, scale), (bn.bias, bias), (bn.running_mean, mean), (bn.running_var, var)):
                tensor.copy_(torch.from_numpy(value))
        self.add(bn.eval(), label)

    def _pool_args(self, node, label: str, attrs: dict) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        if len(self.shape) != 3:
            raise UnsupportedLayer(f"{label}: pooling needs [C, H, W] data, got per-sample {self.shape}")
        _no_auto_pad(attrs, label)
        if attrs.get("ceil_mode", 0):
            raise UnsupportedLayer(f"{label}: ceil_mode=1 is not supported")
        if any(int(d) != 1 for d in attrs.get("dilations", [1, 1])):
            raise UnsupportedLayer(f"{label}: dilated pooling is not supported")
        kernel = _pairs(attrs["kernel_shape"], label, "kernels")
        stride = _pairs(attrs.get("strides", [1, 1]), label, "strides")
        padding = _sym_pads(attrs.get("pads"), label)
        if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
            raise UnsupportedLayer(f"{label}: padding {list(padding)} larger than half the kernel {list(kernel)}")
        return kernel, stride, padding

    def op_AveragePool(self, node, label: str, attrs: dict) -> None:
        kernel, stride, padding = self._pool_args(node, label, attrs)
        if any(padding) and not attrs.get("count_include_pad", 0):
            raise UnsupportedLayer(f"{label}: padded AveragePool with count_include_pad=0 is not supported")
        self.add(nn.AvgPool2d(kernel, stride, padding, count_include_pad=True), label)

    def op_GlobalAveragePool(self, node, label: str, attrs: dict) -> None:
        if len(self.shape) != 3:
            raise UnsupportedLayer(f"{label}: GlobalAveragePool needs [C, H, W] data, got per-sample {self.shape}")
        self.add(nn.AvgPool2d(tuple(self.shape[1:])), label)

    def op_MaxPool(self, node, label: str, attrs: dict) -> None:
        if attrs.get("storage_order", 0):
            raise UnsupportedLayer(f"{label}: storage_order=1 is not supported")
        kernel, stride, padding = self._pool_args(node, label, attrs)
        self.add(nn.MaxPool2d(kernel, stride, padding), label)


def import_onnx(proto, where: str = "<model>") -> OnnxNetwork:
    """Import a loaded ``onnx.ModelProto`` (checked with ``onnx.checker`` first); see the module docstring."""
    import onnx

    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise InvalidFile(f"{where}: not a valid ONNX model ({str(exc).splitlines()[0]})") from exc
    return _Importer(proto, where).run()


def check_onnxruntime(net: OnnxNetwork, data: bytes, samples: int = 4, seed: int = 0) -> float | None:
    """Largest |difference| between the model and onnxruntime on random [0, 1] inputs (None: no onnxruntime).

    Raises :class:`UnsupportedLayer` when they disagree beyond float32 rounding.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    np_dtype = np.float64 if net.dtype == torch.float64 else np.float32
    batch = net.batch or samples  # a file may fix its batch size
    samples = max(samples // batch, 1) * batch
    x = rng.random((samples, *net.input_shape)).astype(np_dtype)
    ref = np.concatenate([session.run(None, {net.input_name: x[i:i + batch]})[0].reshape(batch, -1)
                          for i in range(0, samples, batch)])  # fmt: skip
    with torch.no_grad():
        ours = net.model(torch.as_tensor(x)).double().numpy()
    if ref.shape != ours.shape:
        raise UnsupportedLayer(f"{net.source}: onnxruntime outputs shape {ref.shape[1:]} per sample, the import "
                               f"{ours.shape[1:]}")  # fmt: skip
    diff = float(np.abs(ref.astype(np.float64) - ours).max())
    scale = max(1.0, float(np.abs(ref).max()))
    if not diff <= CHECK_RTOL * scale:
        raise UnsupportedLayer(
            f"{net.source}: the imported network differs from onnxruntime by {diff:.3g} (outputs of size "
            f"{scale:.3g}); the file uses an ONNX feature the importer does not reproduce, please report it")
    return diff


def load_onnx(path: str | Path, check: bool = True) -> OnnxNetwork:
    """Import an ONNX file (``.onnx`` or gzipped, also when named without ``.gz``).

    With ``check`` (default) the import is compared with onnxruntime on random inputs when onnxruntime
    is installed (``net.check`` records the result).
    """
    import onnx
    from google.protobuf.message import DecodeError

    data = read_bytes(path, "ONNX model")
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise InvalidFile(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    net = import_onnx(proto, str(path))
    if check:
        diff = check_onnxruntime(net, data)
        net.check = ("onnxruntime not installed: import not cross-checked" if diff is None
                     else f"matches onnxruntime (max |diff| {diff:.2g} on random inputs)")  # fmt: skip
    return net
