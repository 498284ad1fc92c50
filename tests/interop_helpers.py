"""Shared helpers for the interop tests (no tests here): where the VNN-COMP data is, tiny ONNX graphs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VNNCOMP = Path(os.environ.get("ACTBENCH_VNNCOMP", ROOT.parent / "shared" / "vnncomp2022"))
MNIST_FC = VNNCOMP / "mnist_fc"
needs_vnncomp = pytest.mark.skipif(
    not (MNIST_FC / "instances.csv").is_file(),
    reason=f"VNN-COMP 2022 mnist_fc data not found at {MNIST_FC} (set ACTBENCH_VNNCOMP to its folder)",
)


def instances() -> list[tuple[str, str, float]]:
    """The 90 (onnx, vnnlib, timeout) rows of mnist_fc's instances.csv."""
    rows = []
    for line in (MNIST_FC / "instances.csv").read_text().splitlines():
        if line.strip():
            onnx, vnnlib, timeout = line.split(",")
            rows.append((onnx, vnnlib, float(timeout)))
    return rows


def published_counterexamples(network: str, prop: str) -> list[tuple[str, Path]]:
    """(tool, file) of every counterexample the VNN-COMP tools published for one instance."""
    name = f"{Path(network).name.removesuffix('.onnx')}_{Path(prop).name.removesuffix('.vnnlib')}"
    return [(p.parts[-3], p) for p in sorted(VNNCOMP.glob(f"results/*/mnist_fc/{name}.counterexample.gz"))]


def onnx_model(nodes, inits: dict[str, np.ndarray], in_shape, out_shape, opset: int = 13,
               input_name: str = "x", output_name: str = "y"):
    """A one-input, one-output float32 ONNX model from helper nodes and initializer arrays."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(out_shape))],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def save(model, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path
