#!/usr/bin/env bash
# Check that this machine's GPU runs actbench end to end, in a few minutes: synthetic CIFAR-10 in its real
# format, ibp and ACERT trained for a few hundred steps and certified in float64 on the GPU, CPU and GPU
# bounds of one checkpoint compared, step times and certification throughput printed.
#   bash scripts/gpu-check.sh                 # on the GPU (cuda)
#   bash scripts/gpu-check.sh --device cpu    # the same checks on the CPU, small (what CI runs)
#   bash scripts/gpu-check.sh --help          # sizes, --estimate (run-time estimate of each paper track)
# Self-contained: runs from this checkout with the machine's python3 (torch, numpy, pandas, pyarrow, rich,
# typer), installs nothing and needs no network. PYTHON=... picks another interpreter.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$root/scripts/gpu_check.py" "$@"
