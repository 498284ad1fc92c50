"""ONNX export of any model the bound engine supports, written from the engine's own layer list.

Why not ``torch.onnx.export``: its TorchScript exporter folds each BatchNorm into the preceding
convolution in float32, which changes the weights (a re-imported model would certify slightly different
radii), and its newer exporter needs ``onnxscript``. Writing the graph from ``build_network``'s layers is
short, exact (every weight is written as stored; Normalize becomes ``Sub`` then ``Div``, BatchNorm stays
``BatchNormalization`` with its running statistics) and exports exactly what the verifiers see.

The file uses opset 13 and IR version 7 so that the field's verifiers (alpha-beta-CROWN, MN-BaB, NNV,
Marabou) read it; the batch dimension is symbolic (``N``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from actbench.bounds.network import (
    AvgPoolLayer,
    BatchNormLayer,
    ConvLayer,
    FlattenLayer,
    LinearLayer,
    NormalizeLayer,
    ReLULayer,
    build_network,
    infer_shapes,
)
from actbench.errors import UnsupportedLayer
from actbench.store import atomic_write

OPSET = 13
IR_VERSION = 7
INPUT_NAME, OUTPUT_NAME = "input", "output"


def _array(t: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return t.detach().cpu().numpy().astype(dtype, copy=False)


class _Writer:
    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.nodes: list = []
        self.inits: list = []
        self.current = INPUT_NAME
        self.count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> None:
        from onnx import helper

        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, [self.current, *inputs], [out], name=name, **attrs))
        self.current = out


def _maxpool_type():
    try:
        from actbench.bounds.maxpool import MaxPoolLayer
    except ImportError:  # an engine without MaxPool
        return ()
    return MaxPoolLayer


def build_onnx(model: nn.Module, input_shape: tuple[int, ...], name: str = "actbench-model"):
    """An ``onnx.ModelProto`` computing ``model`` in eval mode (BatchNorm with its running statistics)."""
    from onnx import TensorProto, helper

    net = build_network(model)
    shapes = infer_shapes(net, tuple(input_shape))
    params = [p for p in model.parameters()] + [b for b in model.buffers() if b.is_floating_point()]
    double = bool(params) and params[0].dtype == torch.float64
    dtype = np.float64 if double else np.float32
    w = _Writer(dtype)
    maxpool = _maxpool_type()
    for i, layer in enumerate(net.layers):
        label = f"{i}.{type(layer).__name__}"
        if isinstance(layer, NormalizeLayer):
            mean = _array(layer.module.mean, dtype).reshape(-1, *([1] * (len(shapes[i]) - 1)))
            std = _array(layer.module.std, dtype).reshape(mean.shape)
            w.node("Sub", [w.const(f"{i}.mean", mean)], f"{i}.normalize.sub")
            w.node("Div", [w.const(f"{i}.std", std)], f"{i}.normalize.div")
        elif isinstance(layer, LinearLayer):
            inputs = [w.const(f"{i}.weight", _array(layer.weight, dtype))]
            if layer.bias is not None:
                inputs.append(w.const(f"{i}.bias", _array(layer.bias, dtype)))
            w.node("Gemm", inputs, f"{i}.linear", transB=1)
        elif isinstance(layer, ConvLayer):
            inputs = [w.const(f"{i}.weight", _array(layer.weight, dtype))]
            if layer.bias is not None:
                inputs.append(w.const(f"{i}.bias", _array(layer.bias, dtype)))
            w.node("Conv", inputs, f"{i}.conv", kernel_shape=list(layer.weight.shape[2:]),
                   strides=list(layer.stride), pads=[*layer.padding, *layer.padding],
                   dilations=list(layer.dilation), group=layer.groups)  # fmt: skip
        elif isinstance(layer, BatchNormLayer):
            bn = layer.module
            if bn.running_mean is None:
                raise UnsupportedLayer(f"{layer.name}: a BatchNorm without running statistics cannot be exported")
            c = bn.num_features
            weight = bn.weight if bn.affine else torch.ones(c)
            bias = bn.bias if bn.affine else torch.zeros(c)
            inputs = [w.const(f"{i}.{k}", _array(v, dtype)) for k, v in
                      (("scale", weight), ("bias", bias), ("mean", bn.running_mean), ("var", bn.running_var))]
            w.node("BatchNormalization", inputs, f"{i}.batchnorm", epsilon=float(bn.eps))
        elif isinstance(layer, ReLULayer):
            w.node("Relu", [], f"{i}.relu")
        elif isinstance(layer, FlattenLayer):
            rank = len(shapes[i]) + 1
            end = layer.end_dim + rank if layer.end_dim < 0 else layer.end_dim
            if layer.start_dim != 1 or end != rank - 1:
                raise UnsupportedLayer(f"{layer.name}: only Flatten(start_dim=1, end_dim=-1) can be exported")
            w.node("Flatten", [], f"{i}.flatten", axis=1)
        elif isinstance(layer, AvgPoolLayer):
            w.node("AveragePool", [], f"{i}.avgpool", kernel_shape=list(layer.kernel), strides=list(layer.stride),
                   pads=[*layer.padding, *layer.padding], count_include_pad=1)  # fmt: skip
        elif maxpool and isinstance(layer, maxpool):
            w.node("MaxPool", [], f"{i}.maxpool", kernel_shape=list(layer.kernel), strides=list(layer.stride),
                   pads=[*layer.padding, *layer.padding])  # fmt: skip
        else:
            raise UnsupportedLayer(f"{layer.name}: no ONNX export rule for {type(layer).__name__} ({label})")
    w.nodes[-1].output[0] = OUTPUT_NAME
    elem = TensorProto.DOUBLE if double else TensorProto.FLOAT
    graph = helper.make_graph(
        w.nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, elem, ["N", *input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, elem, ["N", *shapes[-1]])],
        initializer=w.inits,
    )  # fmt: skip
    proto = helper.make_model(graph, producer_name="actbench", opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    return proto


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, name: str = "actbench-model"
                ) -> Path:
    """Atomically write ``model`` (inputs of per-sample shape ``input_shape``) as an ONNX file; checked first."""
    import onnx

    if not list(build_network(model).layers):
        raise UnsupportedLayer("the model has no layers to export")
    proto = build_onnx(model, input_shape, name)
    onnx.checker.check_model(proto)
    path = Path(path)
    atomic_write(path, lambda tmp: tmp.write_bytes(proto.SerializeToString()))
    return path
