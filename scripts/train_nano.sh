#!/usr/bin/env bash
# Rebuild the embedded model moonlet-nano from nothing: generate scenes, train in three phases,
# evaluate on held-out scenes, and install the result into moonlet/assets/moonlet-nano.
#   bash scripts/train_nano.sh [RUN_DIR]
# Sizes can be overridden: BASE_SCENES, EASY_SCENES, SCENES, TEST_SCENES, BASE_STEPS, EASY_STEPS,
# STEPS. INIT=a model to start phase 1 from instead of running phase 0.
#
# Phase 0: a new model on 4,000 full scenes (1-6 objects) learns the language of the answers.
# Phase 1 (curriculum): scenes with 1-2 objects, where colour, shape and position can only come
# from the image and are easy to find, so the vision tower learns to see.
# Phase 2: the 16,000 full scenes and phase 1's easy ones together, from phase 1's model.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/nano}
BASE_SCENES=${BASE_SCENES:-4000}
BASE_STEPS=${BASE_STEPS:-4000}
EASY_SCENES=${EASY_SCENES:-6000}
SCENES=${SCENES:-16000}
TEST_SCENES=${TEST_SCENES:-1000}
EASY_STEPS=${EASY_STEPS:-2500}
STEPS=${STEPS:-4500}
M=.venv/bin/moonlet
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -n "${INIT:-}" ] || [ -f "$RUN/scenes-base/meta.json" ] || $M data generate --out "$RUN/scenes-base" --count "$BASE_SCENES" --seed 1 --force
[ -f "$RUN/scenes-easy/meta.json" ] || $M data generate --out "$RUN/scenes-easy" --count "$EASY_SCENES" --seed 11 --objects 1-2 --force
[ -f "$RUN/scenes-train/meta.json" ] || $M data generate --out "$RUN/scenes-train" --count "$SCENES" --seed 1 --force
[ -f "$RUN/scenes-test/meta.json" ] || $M data generate --out "$RUN/scenes-test" --count "$TEST_SCENES" --seed 777 --force
COMMON=(--batch-size 8 --rows-per-image 6 --warmup 100 --bin-sigma 8 --region-weight 2 --save-every 250 --eval-every 0 --log-every 25 --resume)
if [ -z "${INIT:-}" ]; then
  $M train --data "$RUN/scenes-base" --out "$RUN/phase0" --profile moonlet-nano --steps "$BASE_STEPS" --resume \
    --batch-size 8 --rows-per-image 6 --lr 1e-3 --warmup 200 --bin-sigma 3 --region-weight 2 \
    --save-every 200 --eval-every 0 --log-every 20
  INIT="$RUN/phase0/model"
fi
START=(--init "$INIT")
$M train --data "$RUN/scenes-easy" --out "$RUN/phase1" "${START[@]}" --steps "$EASY_STEPS" \
  --lr 1e-3 --lr-vision 2e-3 --lr-projection 3e-3 "${COMMON[@]}"
$M train --data "$RUN/scenes-easy" "$RUN/scenes-train" --out "$RUN/phase2" --init "$RUN/phase1/model" --steps "$STEPS" \
  --lr 7e-4 --lr-vision 1.4e-3 --lr-projection 2e-3 "${COMMON[@]}"
$M eval synthetic --data "$RUN/scenes-test" --model "$RUN/phase2/model" --out "$RUN/eval" --batch-size 16
mkdir -p moonlet/assets/moonlet-nano
cp "$RUN/phase2/model/"{model.safetensors,config.json,tokenizer.json} moonlet/assets/moonlet-nano/
echo "installed moonlet/assets/moonlet-nano; scores in $RUN/eval/results.json"
