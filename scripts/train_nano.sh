#!/usr/bin/env bash
# Rebuild the embedded model moonlet-nano: generate scenes, train in two phases, evaluate on
# held-out scenes, and install the result into moonlet/assets/moonlet-nano.
#   bash scripts/train_nano.sh [RUN_DIR]
# Sizes can be overridden: EASY_SCENES, SCENES, TEST_SCENES, EASY_STEPS, STEPS; INIT=a model to
# start from instead of a new one (e.g. moonlet/assets/moonlet-nano to continue the shipped model).
#
# Phase 1 (curriculum): scenes with 1-2 objects, where colour, shape and position can only come
# from the image, so the vision tower learns to see before it has to count and compare.
# Phase 2: the full scenes (1-6 objects), starting from phase 1's model.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/nano}
EASY_SCENES=${EASY_SCENES:-6000}
SCENES=${SCENES:-16000}
TEST_SCENES=${TEST_SCENES:-1000}
EASY_STEPS=${EASY_STEPS:-2500}
STEPS=${STEPS:-4000}
M=.venv/bin/moonlet
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -f "$RUN/scenes-easy/meta.json" ] || $M data generate --out "$RUN/scenes-easy" --count "$EASY_SCENES" --seed 11 --objects 1-2 --force
[ -f "$RUN/scenes-train/meta.json" ] || $M data generate --out "$RUN/scenes-train" --count "$SCENES" --seed 1 --force
[ -f "$RUN/scenes-test/meta.json" ] || $M data generate --out "$RUN/scenes-test" --count "$TEST_SCENES" --seed 777 --force
COMMON=(--batch-size 8 --rows-per-image 6 --warmup 100 --bin-sigma 8 --region-weight 2 --save-every 250 --eval-every 0 --log-every 25 --resume)
if [ -n "${INIT:-}" ]; then START=(--init "$INIT"); else START=(--profile moonlet-nano); fi
$M train --data "$RUN/scenes-easy" --out "$RUN/phase1" "${START[@]}" --steps "$EASY_STEPS" \
  --lr 1e-3 --lr-vision 2e-3 --lr-projection 3e-3 "${COMMON[@]}"
$M train --data "$RUN/scenes-train" --out "$RUN/phase2" --init "$RUN/phase1/model" --steps "$STEPS" \
  --lr 7e-4 --lr-vision 1.4e-3 --lr-projection 2e-3 "${COMMON[@]}"
$M eval synthetic --data "$RUN/scenes-test" --model "$RUN/phase2/model" --out "$RUN/eval" --batch-size 16
mkdir -p moonlet/assets/moonlet-nano
cp "$RUN/phase2/model/"{model.safetensors,config.json,tokenizer.json} moonlet/assets/moonlet-nano/
echo "installed moonlet/assets/moonlet-nano; scores in $RUN/eval/results.json"
