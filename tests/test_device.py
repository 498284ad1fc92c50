"""GPU readiness, checked on the CPU: TF32 off in bound code, deferred host reads in training, device facts,
Ray's GPU assignment."""

from __future__ import annotations

import math

import pytest
import torch
from test_train_fixtures import make_model, small_track, synthetic_splits

import actbench.train.trainer as trainer_module
from actbench.bounds import logit_bounds, margin_bounds
from actbench.certify.engine import certify
from actbench.certify.memory import samples_per_pass, widest_activation
from actbench.config import Budget
from actbench.device import device_info, fp32_precision, strict_fp32, sync_interval, to_device
from actbench.errors import ActbenchError
from actbench.models import create_model
from actbench.objectives import create_objective, load_method
from actbench.objectives.standard import Standard
from actbench.sweep import assigned_device, ray_task_resources
from actbench.train import train
from actbench.train.tally import StepTally

# ---------------------------------------------------------------- TF32


@pytest.fixture
def tf32_on():
    """The flags as a user who enabled TF32 would leave them; restored afterwards."""
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)
    before = [f.fp32_precision for f in flags]
    for f in flags:
        f.fp32_precision = "tf32"
    yield
    for f, value in zip(flags, before, strict=True):
        f.fp32_precision = value


def test_strict_fp32_turns_tf32_off_and_restores_even_on_error(tf32_on):
    assert fp32_precision() == ("tf32", "tf32", "tf32")
    with strict_fp32():
        assert fp32_precision() == ("ieee", "ieee", "ieee")
        with strict_fp32():
            pass
        assert fp32_precision() == ("ieee", "ieee", "ieee")
    assert fp32_precision() == ("tf32", "tf32", "tf32")
    with pytest.raises(RuntimeError, match="boom"), strict_fp32():
        raise RuntimeError("boom")
    assert fp32_precision() == ("tf32", "tf32", "tf32")


def test_bounds_and_certification_run_without_tf32(tf32_on, monkeypatch):
    import actbench.bounds.ibp as ibp
    import actbench.certify.engine as engine

    seen: list[tuple[str, ...]] = []
    original_ibp, original_attack = ibp.ibp_to_tail, engine.attack_radii

    def record_ibp(*args, **kwargs):
        seen.append(fp32_precision())
        return original_ibp(*args, **kwargs)

    def record_attack(*args, **kwargs):
        seen.append(fp32_precision())
        return original_attack(*args, **kwargs)

    monkeypatch.setattr(ibp, "ibp_to_tail", record_ibp)
    monkeypatch.setattr(engine, "attack_radii", record_attack)
    torch.manual_seed(0)
    model = create_model("cnn3", (1, 28, 28), 10).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    margin_bounds(model, x, y, 0.01, method="crown-ibp")
    logit_bounds(model, x, 0.01)
    split = synthetic_splits(n_train=16, n_val=16).test
    certify(model, split, 0.05, [0.05], verifiers=("ibp",), samples=8, progress=False)
    assert len(seen) >= 3 and all(flags == ("ieee", "ieee", "ieee") for flags in seen)
    assert fp32_precision() == ("tf32", "tf32", "tf32")  # the caller's choice is back


# ---------------------------------------------------------------- device helpers


def test_device_helpers_on_the_cpu(monkeypatch):
    t = torch.arange(6)
    assert to_device(t, "cpu") is t
    assert sync_interval("cpu") == 1 and sync_interval("cuda") > 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device_info("cpu") == {"type": "cpu"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert device_info("cpu") == {"type": "cpu", "cuda_visible_devices": "3"}


def test_crown_chunks_fit_the_memory_budget():
    tin = create_model("cnn7-tin", (3, 64, 64), 200).double().eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    assert widest_activation(tin, x) == 64 * 64 * 64
    per_sample = 199 * 64 * 64 * 64 * 8 * 3
    assert samples_per_pass("crown-ibp", tin, x, 200, 256, budget=2**33) == 2**33 // per_sample == 6
    assert samples_per_pass("crown-ibp", tin, x, 200, 256, budget=1) == 1
    assert samples_per_pass("ibp", tin, x, 200, 256) == 256
    cifar = create_model("cnn7", (3, 32, 32), 10).double().eval()
    xc = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert samples_per_pass("crown-ibp", cifar, xc, 10, 256) == 2**31 // (9 * 64 * 32 * 32 * 8 * 3) == 151
    assert samples_per_pass("crown", cifar, xc, 10, 256) == 16


# ---------------------------------------------------------------- deferred host reads in training


def test_tally_reads_pending_steps_at_once_and_reports_divergence():
    a, b = StepTally(1), StepTally(3)
    for step, (loss, acc) in enumerate([(2.0, 0.5), (1.5, 0.25), (1.0, 0.75)]):
        for tally in (a, b):
            tally.add(step, torch.tensor(loss), {"train_acc": acc, "clean_loss": torch.tensor(loss / 2)}, 4)
        assert a.due()
        a.flush("ibp", 0)
        assert b.due() == (step == 2)
    assert b.flush("ibp", 0) == (3, 1.0) and b.pending == 0
    assert dict(a.sums) == dict(b.sums) == {"loss": 18.0, "train_acc": 6.0, "clean_loss": 9.0}
    c = StepTally(50)
    for step, loss in enumerate([1.0, math.nan, 2.0]):
        c.add(step, torch.tensor(loss), {}, 8)
    with pytest.raises(ActbenchError, match=r"diverged: the sabr loss is nan at epoch 3, step 2;"):
        c.flush("sabr", 2)


def _run(tmp_path, objective=None, interval=None, monkeypatch=None):
    track = small_track()
    if interval is not None:
        monkeypatch.setattr(trainer_module, "sync_interval", lambda device: interval)
    objective = objective or create_objective(load_method("ibp", track.name, {}), track)
    return train(make_model(0), synthetic_splits(), track, objective, budget=Budget("epochs", 2),
                 run_dir=tmp_path, seed=0, progress=False)  # fmt: skip


def test_deferred_reads_give_the_same_training(tmp_path, monkeypatch):
    every = _run(tmp_path / "a")
    deferred = _run(tmp_path / "b", interval=2, monkeypatch=monkeypatch)  # 3 steps per epoch: reads at 2 and 3
    strip = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert strip(every.history) == strip(deferred.history)
    assert every.used["propagations"] == deferred.used["propagations"]


class NaNAfter(Standard):
    """Standard training whose loss becomes NaN from the given step on."""

    def __init__(self, params, num_classes, step: int):
        super().__init__(params, num_classes)
        self.at = step

    def loss(self, model, x, y, ctx):
        loss, stats = super().loss(model, x, y, ctx)
        return (loss * math.nan if ctx.step >= self.at else loss), stats


def test_divergence_is_caught_before_the_epoch_is_checkpointed(tmp_path, monkeypatch):
    from actbench.train.checkpoint import checkpoint_path

    track = small_track()
    objective = NaNAfter(load_method("standard", track.name, {}).params, 10, step=4)  # epoch 2, second step
    with pytest.raises(ActbenchError, match=r"training diverged: the standard loss is nan at epoch 2, step 2;"):
        _run(tmp_path, objective=objective, interval=50, monkeypatch=monkeypatch)
    blob = torch.load(checkpoint_path(tmp_path), weights_only=False)
    assert blob["epoch"] == 1 and all(torch.isfinite(v).all() for v in blob["model"].values() if v.is_floating_point())


# ---------------------------------------------------------------- Ray's GPUs


def test_ray_tasks_ask_for_one_gpu_when_the_cluster_has_them():
    assert ray_task_resources({"CPU": 16, "GPU": 4}, {"auto"}, jobs=1, local=False) == (1, 1)
    assert ray_task_resources({"CPU": 16, "GPU": 4}, {"cpu"}, jobs=1, local=False) == (1, 0)
    assert ray_task_resources({"CPU": 16}, {"auto"}, jobs=4, local=True) == (4, 0)
    with pytest.raises(ActbenchError, match="no GPUs"):
        ray_task_resources({"CPU": 16}, {"cuda"}, jobs=1, local=False)


def test_a_ray_worker_uses_exactly_the_gpu_it_was_assigned(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert assigned_device("auto", None, True, 8) == "auto"  # not in a Ray worker: unchanged
    assert assigned_device("auto", [2], True, 1) == "cuda"  # cuda:0 of the worker is physical GPU 2
    assert assigned_device("cuda", [2], True, 1) == "cuda"
    assert assigned_device("cpu", [2], True, 1) == "cpu"
    assert assigned_device("auto", [], True, 8) == "cpu"  # no GPU assigned: never take one another run holds
    with pytest.raises(ActbenchError, match="assigned no GPU"):
        assigned_device("cuda", [], True, 8)
    with pytest.raises(ActbenchError, match=r"GPU \[2\].*CUDA_VISIBLE_DEVICES=2.*sees no CUDA device"):
        assigned_device("auto", [2], False, 0)
    with pytest.raises(ActbenchError, match="sees 8 devices"):
        assigned_device("auto", [2], True, 8)


def test_the_training_loop_reads_device_values_only_when_it_logs(tmp_path, monkeypatch):
    """Host reads of tensor values (``float``, ``bool``, ``int``, ``.item()``, ``.tolist()``) made by the
    training loop itself, the batches and the tally: one ``tolist`` per read interval, nothing else.
    (Reads inside the objectives, the bounds and validation are theirs and not counted here.)"""
    import sys

    hot = ("train/trainer.py", "train/tally.py", "actbench/data.py", "actbench/device.py")
    reads: list[str] = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if caller.endswith(hot):
                reads.append(f"{name} in {caller.rsplit('/', 1)[-1]}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, read)

    for name in ("__bool__", "__float__", "__int__", "__index__", "item", "tolist"):
        counting(name)
    track = small_track()
    objective = create_objective(load_method("standard", track.name, {}), track)
    monkeypatch.setattr(trainer_module, "sync_interval", lambda device: 50)
    result = train(make_model(0), synthetic_splits(), track, objective, budget=Budget("epochs", 2), run_dir=tmp_path,
                   seed=0, progress=False)  # fmt: skip
    assert result.used["epochs"] == 2
    assert reads == ["tolist in tally.py"] * 2, reads  # one read at each epoch's last step (3 steps < 50)
