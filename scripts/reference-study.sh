#!/usr/bin/env bash
# The reference study on the fashion-mnist track: every method under the track's one budget (6 epochs),
# two runs at a time; then ACERT at fast-IBP's propagation count. Resumable: run it again to finish
# whatever is missing. Then:
#   python scripts/readme-results.py && actbench site
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
jobs=${JOBS:-2}
# the headline comparison first: ACERT and fast-IBP over the same kappa grid, two seeds
$bin/actbench sweep --dataset fashion-mnist --methods adaptive,ibp --grid kappa=0,0.5 --seeds 0,1 \
  --jobs "$jobs" --quiet
# the baselines, one seed each; SABR and MTL-IBP over a small grid of their key parameter. Runs start in
# the order of the methods, so the costliest come first and the two workers finish close together.
$bin/actbench sweep --dataset fashion-mnist --methods sabr,crown_ibp,pgd,mtl_ibp,standard \
  --grid sabr.lam=0.4,0.7 --grid mtl_ibp.alpha=0.01,0.1 --seeds 0 --jobs "$jobs" --quiet
# ACERT once more at fast-IBP's compute: the propagations an IBP run of this track uses (1.44e6 forward-equivalent
# sample passes, as the ibp cards record), with the schedules still planned for 6 epochs
$bin/actbench sweep --dataset fashion-mnist --methods adaptive --grid kappa=0 --seeds 0,1 \
  --budget propagations=1440000 --jobs "$jobs" --quiet
echo "reference study finished in $((SECONDS / 60)) min $((SECONDS % 60)) s"
