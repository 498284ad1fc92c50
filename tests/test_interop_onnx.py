"""ONNX import and export: the mnist_fc networks against onnxruntime, zoo round trips, each op, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interop_helpers import MNIST_FC, needs_vnncomp, onnx_model, save
from onnx import helper
from torch import nn

from actbench.bounds import margin_bounds
from actbench.errors import ActbenchError, InvalidFile, UnsupportedLayer
from actbench.interop.onnx_export import export_onnx
from actbench.interop.onnx_import import check_onnxruntime, load_onnx
from actbench.models import Normalize, create_model, list_models

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _ort(path, x: np.ndarray, batch_one: bool = False) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if batch_one:
        return np.concatenate([session.run(None, {name: x[i:i + 1]})[0].reshape(1, -1) for i in range(len(x))])
    return session.run(None, {name: x})[0]


def _ours(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net.model(torch.from_numpy(x)).numpy()


@needs_vnncomp
@pytest.mark.parametrize("depth", [2, 4, 6])
def test_mnist_fc_networks_match_onnxruntime(depth, tmp_path):
    gz = MNIST_FC / "onnx" / f"mnist-net_256x{depth}.onnx.gz"
    import gzip

    plain = tmp_path / "net.onnx"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))  # onnxruntime reads only plain files
    net = load_onnx(MNIST_FC / "onnx" / f"mnist-net_256x{depth}.onnx")  # the name instances.csv uses
    assert net.input_shape == (784, 1) and net.num_outputs == 10 and "matches onnxruntime" in net.check
    x = np.random.default_rng(depth).random((16, 784, 1)).astype(np.float32)
    np.testing.assert_allclose(_ours(net, x), _ort(plain, x, batch_one=True), atol=1e-5, rtol=0)
    assert [type(m) for m in net.model][:3] == [nn.Flatten, nn.Linear, nn.ReLU]


def _zoo(name: str, seed: int) -> tuple[nn.Module, tuple[int, int, int]]:
    shape = (1, 28, 28) if name in ("mlp", "cnn3") else (3, 64, 64) if name == "cnn7-tin" else (3, 32, 32)
    torch.manual_seed(seed)
    model = create_model(name, shape, 10, [0.2] * shape[0], [0.3] * shape[0])
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g) * 0.3 + 1)
    return model.eval(), shape


@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_zoo_model_exports_and_reimports_with_the_same_outputs_and_bounds(name, tmp_path):
    model, shape = _zoo(name, 0)
    path = export_onnx(model, shape, tmp_path / f"{name}.onnx")
    net = load_onnx(path)  # also compared with onnxruntime on random inputs
    assert net.input_shape == shape and net.num_outputs == 10 and "matches onnxruntime" in net.check
    assert isinstance(net.model[0], Normalize)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(_ours(net, x.numpy()), _ort(path, x.numpy()), atol=1e-5, rtol=0)
    y = torch.tensor([3, 7])
    with torch.no_grad():
        assert torch.equal(model(x), net.model(x))
        m64, n64 = model.double(), net.model.double()
        x64 = x.double()
        assert torch.equal(m64(x64), n64(x64))
        methods = ("ibp", "crown-ibp", "crown") if name in ("mlp", "cnn3") else ("ibp", "crown-ibp")
        for method in methods:
            a = margin_bounds(m64, x64[:1], y[:1], 0.01, method=method).lower
            b = margin_bounds(n64, x64[:1], y[:1], 0.01, method=method).lower
            assert torch.equal(a, b), method


def _check(model, tmp_path, x: np.ndarray, name: str = "m.onnx"):
    path = save(model, tmp_path / name)
    net = load_onnx(path)
    np.testing.assert_allclose(_ours(net, x), _ort(path, x), atol=1e-5, rtol=0)
    return net


def test_matmul_add_gemm_attributes(tmp_path):
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    w2, b2 = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(1, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm"),
        helper.make_node("Add", ["b1", "h1"], ["h2"], name="bias"),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("Gemm", ["h3", "w2", "b2"], ["y"], alpha=0.5, beta=2.0, transB=1),
    ]
    net = _check(onnx_model(nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, ["N", 6], ["N", 3]), tmp_path,
                 rng.random((4, 6)).astype(np.float32))  # fmt: skip
    assert [type(m) for m in net.model] == [nn.Linear, nn.ReLU, nn.Linear]  # the Add folded into the bias


def test_normalisation_conv_batchnorm_pool_flatten(tmp_path):
    rng = np.random.default_rng(1)
    f = np.float32
    inits = {
        "mean": np.array([0.5, 0.4], f).reshape(2, 1, 1), "std": np.array([0.2, 0.3], f).reshape(2, 1, 1),
        "cw": rng.normal(size=(3, 2, 3, 3)).astype(f), "cb": rng.normal(size=3).astype(f),
        "s": (rng.random(3) + 0.5).astype(f), "b": rng.normal(size=3).astype(f), "m": rng.normal(size=3).astype(f),
        "v": (rng.random(3) + 0.5).astype(f), "three": np.array(3.0, f), "gw": rng.normal(size=(27, 4)).astype(f),
        "shift": rng.normal(size=(1, 3, 1, 1)).astype(f),
    }  # fmt: skip
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["a"]), helper.make_node("Div", ["a", "std"], ["b0"]),
        helper.make_node("Conv", ["b0", "cw", "cb"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Mul", ["c", "three"], ["c2"]),  # folded into the convolution
        helper.make_node("BatchNormalization", ["c2", "s", "b", "m", "v"], ["d"], epsilon=1e-3),
        helper.make_node("Relu", ["d"], ["e"]),
        helper.make_node("Sub", ["shift", "e"], ["e2"]),  # shift - e: a per-channel affine map (BatchNorm)
        helper.make_node("AveragePool", ["e2"], ["f"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Flatten", ["f"], ["g"], axis=1),
        helper.make_node("MatMul", ["g", "gw"], ["y"]),
    ]  # fmt: skip
    net = _check(onnx_model(nodes, inits, ["N", 2, 8, 8], ["N", 4]), tmp_path,
                 rng.random((3, 2, 8, 8)).astype(np.float32))  # fmt: skip
    kinds = [type(m) for m in net.model]
    assert kinds == [Normalize, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.BatchNorm2d, nn.AvgPool2d, nn.Flatten,
                     nn.Linear]  # fmt: skip
    assert net.model[2].eps == 1e-3  # float32 attribute snapped back to the decimal it was written as


def test_shape_chain_reshape_global_pool_dropout(tmp_path):
    """``x.view(x.size(0), -1)`` as exporters write it: Shape, Gather, Unsqueeze, Concat, Reshape."""
    rng = np.random.default_rng(2)
    f = np.float32
    inits = {"idx": np.array(0, np.int64), "minus": np.array([-1], np.int64), "axes": np.array([0], np.int64),
             "w": rng.normal(size=(2, 3)).astype(f), "scale": np.array([2.0, 0.5], f)}  # fmt: skip
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Dropout", ["p"], ["q"]),
        helper.make_node("Shape", ["q"], ["shape"]),
        helper.make_node("Gather", ["shape", "idx"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus"], ["target"], axis=0),
        helper.make_node("Reshape", ["q", "target"], ["r"]),
        helper.make_node("Identity", ["r"], ["r2"]),
        helper.make_node("Mul", ["r2", "scale"], ["r3"]),
        helper.make_node("MatMul", ["r3", "w"], ["y"]),
    ]
    net = _check(onnx_model(nodes, inits, [1, 2, 5, 5], [1, 3]), tmp_path, rng.random((1, 2, 5, 5)).astype(f))
    assert [type(m) for m in net.model] == [nn.AvgPool2d, nn.Flatten, nn.BatchNorm1d, nn.Linear]


def _linear_graph(extra_nodes, extra_inits=None, out="h"):
    w = np.ones((4, 3), np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="first"), *extra_nodes]
    return onnx_model(nodes, {"w": w, **(extra_inits or {})}, ["N", 4], ["N", 3], output_name=out)


@pytest.mark.parametrize(("model", "message"), [
    (_linear_graph([helper.make_node("Sigmoid", ["h"], ["y"], name="sig")], out="y"), "'sig' (op Sigmoid)"),
    (_linear_graph([helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Add", ["h", "r"], ["y"], name="res")],
                   out="y"), "is used by several nodes"),
    (_linear_graph([helper.make_node("MatMul", ["c", "h"], ["y"], name="left")], {"c": np.ones((3, 3), np.float32)},
                   out="y"), "'left' (op MatMul)"),
    (onnx_model([helper.make_node("Conv", ["x", "w"], ["y"], name="cv", pads=[0, 0, 1, 1])],
                {"w": np.ones((1, 1, 2, 2), np.float32)}, ["N", 1, 4, 4], ["N", 1, 4, 4]), "symmetric"),
    (onnx_model([helper.make_node("Add", ["x", "c"], ["y"], name="pix")], {"c": np.arange(16, dtype=np.float32)
                .reshape(1, 4, 4)}, ["N", 1, 4, 4], ["N", 1, 4, 4]), "varies within a channel"),
    (onnx_model([helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transA=1)], {"w": np.ones((4, 3), np.float32)},
                ["N", 4], ["N", 3]), "transA"),
    (onnx_model([helper.make_node("Relu", ["x"], ["y"])], {}, ["N", 4, 3], ["N", 4, 3]), "[batch, K]"),
])  # fmt: skip
def test_unsupported_graphs_name_the_node_and_op(model, message, tmp_path):
    with pytest.raises(UnsupportedLayer) as info:
        load_onnx(save(model, tmp_path / "bad.onnx"))
    assert message in str(info.value)


def test_malformed_files(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not an onnx model at all")
    with pytest.raises(InvalidFile):
        load_onnx(junk)
    broken = onnx_model([helper.make_node("Relu", ["nowhere"], ["y"])], {}, ["N", 3], ["N", 3])
    with pytest.raises(InvalidFile, match="not a valid ONNX model"):
        load_onnx(save(broken, tmp_path / "broken.onnx"))
    with pytest.raises(ActbenchError, match="no ONNX model"):
        load_onnx(tmp_path / "missing.onnx")


def test_a_wrong_import_is_caught_by_the_onnxruntime_check(tmp_path):
    model, shape = _zoo("mlp", 1)
    path = export_onnx(model, shape, tmp_path / "mlp.onnx")
    net = load_onnx(path)
    with torch.no_grad():
        net.model[2].bias.add_(0.01)  # as if the importer had mistranslated one bias
    with pytest.raises(UnsupportedLayer, match="differs from onnxruntime"):
        check_onnxruntime(net, path.read_bytes())


def test_maxpool_imports_exports_and_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(3)
    f = np.float32
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["p"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["q"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["q"], ["g"]),
        helper.make_node("Gemm", ["g", "fw"], ["y"], transB=1),
    ]
    inits = {"w": rng.normal(size=(2, 1, 3, 3)).astype(f), "fw": rng.normal(size=(3, 8)).astype(f)}
    x = rng.random((3, 1, 8, 8)).astype(f)
    net = _check(onnx_model(nodes, inits, ["N", 1, 8, 8], ["N", 3]), tmp_path, x)
    assert [type(m) for m in net.model].count(nn.MaxPool2d) == 2
    again = load_onnx(export_onnx(net.model, (1, 8, 8), tmp_path / "again.onnx"))
    np.testing.assert_allclose(_ours(again, x), _ort(tmp_path / "m.onnx", x), atol=1e-5, rtol=0)
    with torch.no_grad():
        for method in ("ibp", "crown-ibp", "crown"):
            a = margin_bounds(net.model.double(), torch.from_numpy(x).double(), torch.tensor([0, 1, 2]), 0.05,
                              method=method).lower  # fmt: skip
            b = margin_bounds(again.model.double(), torch.from_numpy(x).double(), torch.tensor([0, 1, 2]), 0.05,
                              method=method).lower  # fmt: skip
            assert torch.equal(a, b)
