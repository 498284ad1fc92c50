"""The GPU check behind ``scripts/gpu-check.sh``: train, certify and compare bounds on a device, in minutes.

1. writes a synthetic CIFAR-10 in its real format (python pickles) into a work folder;
2. trains ``ibp`` and ``adaptive`` (ACERT) on the ``cifar10`` track (quick preset, CNN7 at 32 px) for a
   few hundred steps on the device, selects on validation, certifies in float64 on the device and writes
   their cards, then checks the cards name the device (and the GPU);
3. recomputes IBP and CROWN-IBP margin bounds and certified radii of the ``ibp`` checkpoint on the CPU and
   on the device, in float64: they must agree to float64 rounding;
4. prints step times, host synchronisations per step, certification throughput and, with ``--estimate``,
   the estimated time of a full run of each paper track on this device (from a step-time benchmark);
5. checks that no optional package (Ray, Optuna, HiGHS, ONNX Runtime) was imported.

Exit status 0 when every check passes, 1 otherwise. Needs only torch, numpy, pandas, pyarrow, rich and
typer; installs nothing. Run from the checkout: ``bash scripts/gpu-check.sh [--device cuda|cpu]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

OPTIONAL = ("ray", "optuna", "highspy", "onnxruntime")
BOUND_RTOL = 1e-9  # float64 rounding through CNN7, relative to the bounds' scale
RADIUS_RTOL = 1e-4  # the root search's tolerance (certify's rtol)
PAPER_TRACKS = ("mnist", "cifar10", "tinyimagenet")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--train-subset", type=int, default=None,
                        help="training images (default: 12800 on cuda = 100 steps/epoch, 32 on cpu)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 3 on cuda, 2 on cpu)")
    parser.add_argument("--samples", type=int, default=None, help="test samples certified (default 500 / 6)")
    parser.add_argument("--compare-samples", type=int, default=None, help="samples for the CPU/device comparison")
    parser.add_argument("--estimate", action=argparse.BooleanOptionalAction, default=None,
                        help="per-track run-time estimate from a step-time benchmark (default: on for cuda)")
    parser.add_argument("--workdir", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.train_subset = args.train_subset or (12800 if cuda else 32)
    args.epochs = args.epochs or (3 if cuda else 2)
    args.samples = args.samples or (500 if cuda else 6)
    args.compare_samples = args.compare_samples or (64 if cuda else 4)
    args.estimate = cuda if args.estimate is None else args.estimate
    return args


class Report:
    """Collects PASS/FAIL lines; ``ok`` is False after any failure."""

    def __init__(self) -> None:
        self.ok = True

    def check(self, passed: bool, what: str) -> None:
        self.ok &= bool(passed)
        print(f"  [{'PASS' if passed else 'FAIL'}] {what}", flush=True)


def train_and_certify(args: argparse.Namespace, data: Path, out: Path, report: Report) -> dict[str, dict]:
    from actbench.runner import RunRequest, execute_run
    from actbench.store import read_card

    cards = {}
    for method in ("ibp", "adaptive"):
        print(f"\n== {method}: {args.epochs} epochs on {args.train_subset} images, certify {args.samples} "
              f"test samples on {args.device}", flush=True)
        request = RunRequest(method=method, track="cifar10", preset="quick", epochs=args.epochs,
                             train_subset=args.train_subset, certify_samples=args.samples, device=args.device,
                             data_dir=str(data), out=out, progress=sys.stderr.isatty())  # fmt: skip
        start = time.perf_counter()
        outcome = execute_run(request)
        card = read_card(outcome.run_dir)
        cards[method] = card
        steps = args.epochs * math.ceil(args.train_subset / card["track"]["batch_size"])
        used = card["budget"]["used"]
        cert = card["certification"]
        env = card["environment"]
        print(f"  run {card['run_id']} in {time.perf_counter() - start:.1f} s; {steps} steps, "
              f"{1000 * used['seconds'] / steps:.1f} ms/step (training only)")
        cert_seconds = sum(cert["seconds"].get(v, 0.0) for v in cert["verifiers"])
        rate = f"{cert['samples'] / cert_seconds:.1f} samples/s" if cert_seconds > 0.01 else "no bound pass needed"
        print(f"  certification: {cert['samples']} samples in {cert_seconds:.2f} s ({rate}; "
              + ", ".join(f"{v} {cert['seconds'].get(v, 0.0):.2f} s" for v in cert["verifiers"])
              + f"), attack {cert['seconds'].get('attack', 0.0):.2f} s; clean accuracy "
              f"{100 * card['metrics']['clean_accuracy']:.1f} %, ACR {card['metrics']['acr']['best']:.5f}")
        report.check(card["status"] == "complete", f"{method}: card complete")
        report.check(env["device"] == args.device and env["device_info"]["type"] == args.device,
                     f"{method}: card environment records device {args.device}")
        report.check(cert["device"]["type"] == args.device and cert["dtype"] == "float64",
                     f"{method}: certified in float64 on {args.device}")
        if args.device == "cuda":
            name = env["device_info"].get("name")
            report.check(bool(name), f"{method}: card names the GPU ({name})")
        card["_steps"], card["_cert_seconds"] = steps, cert_seconds
    return cards


def compare_devices(args: argparse.Namespace, data: Path, run_dir: Path, report: Report) -> None:
    import torch

    from actbench.bounds import margin_bounds
    from actbench.certify.engine import certify
    from actbench.config import load_track
    from actbench.data import Split, load_splits
    from actbench.models import load_model

    print(f"\n== CPU vs {args.device}: float64 bounds and radii of the ibp checkpoint", flush=True)
    track = load_track("cifar10")
    model, _ = load_model(run_dir / "model.pt")
    cpu = model.double().eval()
    dev = load_model(run_dir / "model.pt")[0].to(args.device).double().eval()
    test = load_splits("cifar10", data, val_size=track.val_size, augment=False, download=False).test
    n = min(args.compare_samples, len(test))
    x, y = test.tensors(torch.arange(n), dtype=torch.float64)
    worst = 0.0
    for eps in track.eps_test:
        for method in ("ibp", "crown-ibp"):
            with torch.no_grad():
                a = margin_bounds(cpu, x, y, eps, method=method).lower
                b = margin_bounds(dev, x.to(args.device), y.to(args.device), eps, method=method).lower.cpu()
            scale = 1.0 + float(a.abs().max())
            diff = float((a - b).abs().max()) / scale
            worst = max(worst, diff)
            flips = int(((a > 0) != (b > 0)).logical_and(a.abs() > BOUND_RTOL * scale).sum())
            print(f"  {method:9s} eps {eps * 255:.1f}/255: max |cpu - {args.device}| / scale = {diff:.2e}, "
                  f"decision flips {flips}")
            report.check(diff <= BOUND_RTOL and flips == 0, f"{method} bounds at eps {eps * 255:.1f}/255 agree")
    # radii of the model's own predictions: every sample is then correctly classified and searched
    with torch.no_grad():
        predicted = Split(test.images[:n], cpu(x).argmax(1))
    radii = {}
    for device in ("cpu", args.device):
        report_ = certify(model, predicted, track.eps, list(track.eps_grid), verifiers=("ibp", "crown-ibp"),
                          attack=False, device=device, progress=False, eps_test=list(track.eps_test))  # fmt: skip
        radii[device] = torch.tensor(report_.records["radius_best"].to_numpy())
    gap = float((radii["cpu"] - radii[args.device]).abs().max())
    print(f"  certified radii of {n} samples (labelled with the model's predictions, median "
          f"{float(radii['cpu'].median()):.2e}): max |cpu - {args.device}| = {gap:.2e} (cap {track.eps:.4f})")
    report.check(gap <= 2 * RADIUS_RTOL * track.eps, "certified radii agree within the search tolerance")
    if args.device == "cuda":
        tf32_effect(dev, x, y, track.eps_test[-1])


def tf32_effect(model, x, y, eps: float) -> None:
    """How much TF32 would move float32 bounds (why every bound runs with it off)."""
    import torch

    from actbench.bounds.api import margin_bounds

    net = model.float()
    xf, yf = x.float().to("cuda"), y.to("cuda")
    strict = margin_bounds(net, xf, yf, eps, method="crown-ibp").lower
    raw = getattr(margin_bounds, "__wrapped__", None)
    if raw is None or not hasattr(torch.backends.cudnn.conv, "fp32_precision"):
        return
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    before = [f.fp32_precision for f in flags]
    try:
        for f in flags:
            f.fp32_precision = "tf32"
        loose = raw(net, xf, yf, eps, method="crown-ibp").lower
    finally:
        for f, value in zip(flags, before, strict=True):
            f.fp32_precision = value
    print(f"  (float32 CROWN-IBP bounds with TF32 would differ by up to {float((strict - loose).abs().max()):.2e}; "
          "actbench turns TF32 off for bounds)")
    model.double()


def _timing(name: str, method: str, device: str):
    """A few synchronised steps on cuda; one small-batch step on the CPU (there it only exercises the code)."""
    from actbench.train.steptime import time_steps

    if device == "cuda":
        return time_steps(name, method, device, steps=5, warmup=2)
    return time_steps(name, method, device, batch_size=2, steps=1, warmup=0)


def host_syncs(args: argparse.Namespace) -> None:
    what = "batch 128, median of 5 synchronised steps" if args.device == "cuda" else "batch 2, one step"
    print(f"\n== training step on {args.device} (cifar10 track, full eps, {what})")
    for method in ("ibp", "adaptive"):
        t = _timing("cifar10", method, args.device)
        syncs = "n/a on cpu" if t.syncs is None else f"{t.syncs:.0f}"
        print(f"  {method:9s} {t.ms:8.1f} ms/step, {t.gflop:7.1f} GFLOP/step, host syncs per step: {syncs}")


def estimate(args: argparse.Namespace, cards: dict[str, dict]) -> None:
    """Full-run time per paper track: step time x steps, plus certification scaled from the CIFAR-10 run.

    Certification per sample is taken from the measured ``ibp`` run on CIFAR-10 and scaled by the track's
    model cost (IBP step GFLOP relative to CIFAR-10's) and its number of margins (CROWN-IBP carries one
    row per class but the true one): a rough scale, since it also depends on how many samples IBP leaves
    to CROWN-IBP.
    """
    from actbench.config import load_track
    from actbench.data import get_info
    from actbench.train.steptime import run_estimate

    print(f"\n== estimated full paper-track runs on this {args.device} (an estimate: step-time benchmark x "
          "steps; certification scaled from the run above)")
    card = cards["ibp"]
    cifar_ms = 1000 * (card["_cert_seconds"] + card["certification"]["seconds"].get("attack", 0.0)) \
        / card["certification"]["samples"]
    timings = {(name, m): _timing(name, m, args.device) for name in PAPER_TRACKS for m in ("ibp", "adaptive")}
    base = timings[("cifar10", "ibp")].gflop
    for name in PAPER_TRACKS:
        track = load_track(name)
        margins = (get_info(track.dataset).num_classes - 1) / 9
        cert_ms = cifar_ms * timings[(name, "ibp")].gflop / base * max(margins, 1.0)
        for method in ("ibp", "adaptive"):
            t = timings[(name, method)]
            est = run_estimate(track, t.ms, cert_ms)
            print(f"  {name:12s} {method:9s} {t.ms:8.1f} ms/step x {est['steps']} steps: train "
                  f"{est['train_hours']:.1f} h + certify {est['certify_hours']:.1f} h = {est['total_hours']:.1f} h")


def main(argv: list[str] | None = None) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - the lent GPU machine's python3 may be older
        print(f"gpu-check needs Python >= 3.11 (this is {sys.version.split()[0]})")
        return 1
    args = parse_args(argv)
    import torch

    from actbench.device import device_info, fp32_precision
    from actbench.synthetic import write_cifar10

    report = Report()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible to torch; run with --device cpu to check the CPU path")
        return 1
    print(f"actbench gpu-check: python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"device {device_info(args.device)}, TF32 switches {fp32_precision()}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="actbench-gpu-check-"))
    start = time.perf_counter()
    try:
        data = work / "data"
        n_train = 5000 + args.train_subset  # the track's 5000 validation images come from the training set
        write_cifar10(data, n_train=n_train, n_test=max(args.samples, args.compare_samples))
        print(f"data: synthetic CIFAR-10 (python pickles), {n_train} train + {args.samples} test images in {data}")
        cards = train_and_certify(args, data, work / "results", report)
        ibp_dir = work / "results" / "cifar10" / cards["ibp"]["run_id"]
        compare_devices(args, data, ibp_dir, report)
        host_syncs(args)
        if args.estimate:
            estimate(args, cards)
        imported = [m for m in OPTIONAL if m in sys.modules]
        report.check(not imported, f"no optional package imported ({', '.join(imported) or 'none'})")
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ngpu-check {'PASSED' if report.ok else 'FAILED'} in {time.perf_counter() - start:.0f} s "
          f"({args.device})")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
