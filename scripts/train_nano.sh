#!/usr/bin/env bash
# Rebuild the embedded model moonlet-nano from nothing: generate scenes, train, evaluate on
# held-out scenes, and install the result into moonlet/assets/moonlet-nano.
#   bash scripts/train_nano.sh [RUN_DIR]      (STEPS, SCENES, TEST_SCENES override the sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/nano}
STEPS=${STEPS:-4000}
SCENES=${SCENES:-4000}
TEST_SCENES=${TEST_SCENES:-1000}
M=.venv/bin/moonlet
[ -d "$RUN/scenes-train" ] || $M data generate --out "$RUN/scenes-train" --count "$SCENES" --seed 1
[ -d "$RUN/scenes-test" ] || $M data generate --out "$RUN/scenes-test" --count "$TEST_SCENES" --seed 777
$M train --data "$RUN/scenes-train" --out "$RUN/train" --profile moonlet-nano --resume \
  --steps "$STEPS" --batch-size 8 --rows-per-image 6 --lr 1e-3 --warmup 200 \
  --bin-sigma 3 --region-weight 2 --save-every 200 --eval-every 0 --log-every 20
$M eval synthetic --data "$RUN/scenes-test" --model "$RUN/train/model" --out "$RUN/eval" --batch-size 16
mkdir -p moonlet/assets/moonlet-nano
cp "$RUN/train/model/"{model.safetensors,config.json,tokenizer.json} moonlet/assets/moonlet-nano/
echo "installed moonlet/assets/moonlet-nano; scores in $RUN/eval/results.json"
