#!/usr/bin/env bash
# The reference study on the fashion-mnist track (README "Results"). Every certified-training method gets
# the same tuning budget: two configurations of its trade-off parameter, the robust end and one that
# reaches a clean accuracy of about 85 % in the pilot runs, two seeds each. Standard training and PGD-AT
# are references (two seeds). Then ACERT again at fast-IBP's compute (the propagations an IBP run of the
# track spends). Every run is certified under the track's protocol (the incomplete cascade on the first
# 5000 test images, complete verification at eps 0.1 on the first 100) and exported to ONNX. Resumable:
# run it again to finish whatever is missing (DRY_RUN=1 shows what that would do). Two runs at a time, one
# thread each (JOBS=1 for one). Then:
#   python scripts/readme-results.py && actbench site && git add $(python scripts/stage-complete-runs.py)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-.venv/bin}
jobs=${JOBS:-2}
out=${OUT:-results}
track=fashion-mnist
common=(--dataset "$track" --seeds 0,1 --jobs "$jobs" --out "$out" --quiet)
# DRY_RUN=1: print the three plans (each run's status: new, resume or complete) and stop
if [ "${DRY_RUN:-0}" = 1 ]; then common+=(--dry-run); fi
# 1. the five certified-training methods, costliest first so that the two workers finish close together.
#    κ mixes the clean loss into the robust one for IBP, CROWN-IBP, ACERT and SABR (at SABR's paper λ, 0.4:
#    at this scale λ alone tops out near 79 % clean); MTL-IBP's own trade-off is α (0.001 is close to
#    adversarial training, whose clean accuracy bounds it).
"$bin/actbench" sweep --methods crown_ibp,sabr,mtl_ibp,adaptive,ibp \
  --grid crown_ibp.kappa=0,0.97 --grid sabr.kappa=0,0.97 --grid mtl_ibp.alpha=0.1,0.001 \
  --grid adaptive.kappa=0,0.97 --grid ibp.kappa=0,0.97 "${common[@]}"
# 2. the references
"$bin/actbench" sweep --methods pgd,standard "${common[@]}"
# 3. ACERT at fast-IBP's compute: 1.44e6 forward-equivalent sample passes (what the ibp cards record), its
#    schedules still planned for the track's 6 epochs
"$bin/actbench" sweep --methods adaptive --grid kappa=0,0.97 --budget propagations=1440000 "${common[@]}"
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
# 4. every model also as ONNX, for the field's verifiers
for run in "$out/$track"/*/; do
  if [ -f "$run/model.pt" ] && [ ! -f "$run/model.onnx" ]; then
    "$bin/actbench" export "$run" --onnx "$run/model.onnx" > /dev/null
  fi
done
echo "reference study finished in $((SECONDS / 60)) min $((SECONDS % 60)) s"
