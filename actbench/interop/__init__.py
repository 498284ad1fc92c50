"""Interoperability with the verification field: ONNX and VNN-LIB in and out, VNN-COMP answers, submissions.

Public API::

    load_onnx(path) -> OnnxNetwork                     ONNX -> nn.Sequential of engine layers (checked vs onnxruntime)
    export_onnx(model, input_shape, path)              any engine-supported model -> ONNX (exact weights)
    read_property(path) / write_property(...)          VNN-LIB local-robustness properties
    verify_property(net, prop, verifiers, timeout)     VNN-COMP answer: unsat / sat / unknown / timeout
    run_instances(instances_csv, out_dir, ...)         a VNN-COMP benchmark folder -> results.csv
    export_run(run_dir, onnx=..., vnnlib=..., ...)     a run's model and test samples as ONNX + VNN-LIB
    certify_external(model_file, track, ...)           certify a model trained elsewhere into a run card

``onnx`` is imported only when one of these is called, so ``import actbench`` does not need it.
"""

from actbench.interop.vnnlib import (
    NotRobustnessProperty,
    RobustnessProperty,
    read_counterexample,
    read_property,
    write_counterexample,
    write_property,
)

__all__ = [
    "NotRobustnessProperty",
    "RobustnessProperty",
    "certify_external",
    "export_onnx",
    "export_run",
    "load_onnx",
    "read_counterexample",
    "read_property",
    "run_instances",
    "verify_property",
    "write_counterexample",
    "write_property",
]


def __getattr__(name: str):
    """Lazy access to the parts that import onnx or the engine."""
    homes = {
        "load_onnx": "onnx_import", "export_onnx": "onnx_export", "verify_property": "verify",
        "run_instances": "instances", "export_run": "export", "certify_external": "external",
    }  # fmt: skip
    if name in homes:
        import importlib

        return getattr(importlib.import_module(f"actbench.interop.{homes[name]}"), name)
    raise AttributeError(name)
