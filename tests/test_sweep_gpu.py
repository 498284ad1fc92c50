"""Ray sweeps on a cluster that reports a GPU: each run's task asks for one, and the worker checks it got it.

This machine has no real GPU, so the local Ray instance declares a fake one (``num_gpus=1``). A run that may
use a GPU is given it (Ray sets its ``CUDA_VISIBLE_DEVICES``); its worker sees that assignment and, since
torch finds no CUDA device behind it, refuses to fall back silently to the CPU. A ``--device cpu`` run
asks for no GPU and completes, recording in its card that it was assigned none. (``--device cuda`` on a
cluster without GPUs is refused before anything runs: ``test_device``.)
"""

from __future__ import annotations

import pytest
from rich.console import Console

from actbench.store import read_card
from actbench.sweep import plan_sweep, run_dir_of, run_sweep
from actbench.synthetic import write_mnist

pytestmark = pytest.mark.slow


def test_ray_gives_each_run_one_gpu_and_the_worker_uses_the_one_assigned(tmp_path):
    pytest.importorskip("ray")
    import ray

    data = tmp_path / "data"
    write_mnist(data, n_train=5200, n_test=40, folder="fashion-mnist")
    plan = dict(seeds=[0], preset="quick", epochs=1, out=tmp_path / "results", data_dir=str(data),
                train_subset=128, certify_samples=20)  # fmt: skip
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level="warning")
    try:
        assert ray.cluster_resources().get("GPU") == 1
        gpu_runs = run_sweep(plan_sweep(["standard"], "fashion-mnist", device="auto", **plan), executor="ray",
                             console=Console(quiet=True))  # fmt: skip
        cpu_runs = run_sweep(plan_sweep(["standard"], "fashion-mnist", device="cpu", **plan), executor="ray",
                             console=Console(quiet=True))  # fmt: skip
    finally:
        ray.shutdown()

    [failed] = gpu_runs.failed
    assert failed.attempts == 2
    assert "Ray assigned GPU [0] to this run (CUDA_VISIBLE_DEVICES=0)" in failed.error
    assert "sees no CUDA device" in failed.error

    assert cpu_runs.ok, [r.error for r in cpu_runs.failed]
    [done] = cpu_runs.completed
    card = read_card(run_dir_of(done.request))
    assert card["status"] == "complete" and card["environment"]["device"] == "cpu"
    assert card["environment"]["device_info"]["ray_gpu_ids"] == []
    assert card["certification"]["device"]["type"] == "cpu"
