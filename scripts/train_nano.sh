#!/usr/bin/env bash
# Rebuild the embedded model moonlet-nano from nothing, in stages that resume.
#   bash scripts/train_nano.sh [RUN_DIR]
#
# One run, one optimiser, one warmup-stable-decay schedule across every stage (the data changes,
# the learning rate does not restart). Both cores train through torchrun (2 ranks, gloo, one
# thread each). The resumable state (float32 weights, bfloat16 moments, config, tokenizer) is
# copied to training/nano/ at every save, so a later stretch on a fresh machine continues it:
# run this script again. A stretch stops itself after STRETCH_MIN minutes (exit status 3).
#
# Stages (each ends with a go/no-go figure from the dev set, scored by greedy decoding):
#   see:  1-2 object scenes, the dense auxiliary head on (its glyph part from step 5,814); captions
#         light, long captions lighter.
#   full: 1-6 object scenes together with the easy ones; captions at full weight.
# Then a cool-down branch (the learning rate decays linearly to 10 % over COOL steps, from a copy
# of the state, so that training can go on from the stable phase later), the held-out evaluation
# (seed 777, never used in training or for decisions), the curves, and the installed model.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/nano}
STATE=${STATE:-training/nano}
EASY_SCENES=${EASY_SCENES:-8000}
FULL_SCENES=${FULL_SCENES:-16000}
SEE_STEPS=${SEE_STEPS:-8000}     # cumulative step counts at the end of each stage (see: 6,000 → 8,000 at step 3,837)
FULL_STEPS=${FULL_STEPS:-20000}
COOL=${COOL:-600}
STRETCH_MIN=${STRETCH_MIN:-140}
NPROC=${NPROC:-2}
M=.venv/bin/moonlet
PY=.venv/bin/python
export OMP_NUM_THREADS=1

# --- data: training sets, a dev set of its own seed, the held-out test set -------------------
[ -f "$RUN/scenes-easy/meta.json" ] || $M data generate --out "$RUN/scenes-easy" --count "$EASY_SCENES" --seed 11 --objects 1-2 --force
[ -f "$RUN/scenes-full/meta.json" ] || $M data generate --out "$RUN/scenes-full" --count "$FULL_SCENES" --seed 1 --force
[ -f "$RUN/scenes-dev/meta.json" ] || $M data generate --out "$RUN/scenes-dev" --count 200 --seed 555 --force
[ -f "$RUN/scenes-test/meta.json" ] || $M data generate --out "$RUN/scenes-test" --count 1000 --seed 777 --force
# one tokenizer for every stage, learnt on all the training texts (digits split; special ids fixed)
[ -f "$RUN/tokenizer.json" ] || $PY -m moonlet.train.tokenizer_train --data "$RUN/scenes-easy" "$RUN/scenes-full" \
  --out "$RUN/tokenizer.json"

TRAIN=($PY -m torch.distributed.run --nproc_per_node "$NPROC" --master_port 29561 -m moonlet train)
COMMON=(--out "$RUN/train" --profile moonlet-nano --tokenizer "$RUN/tokenizer.json" --state-dir "$STATE" --resume --stop-after-min "$STRETCH_MIN"
  --batch-size 16 --rows-per-image 16 --lr 1.5e-3 --lr-projection 3e-3 --warmup 300 --schedule wsd
  --bin-sigma 4 --region-weight 1 --save-every 250 --eval-every 500 --dev-data "$RUN/scenes-dev" --dev-scenes 60
  --log-every 25 --device cpu)
stage() {  # stage STEPS [train flags...]: train until the cumulative step count STEPS
  local steps=$1
  shift
  "${TRAIN[@]}" "${COMMON[@]}" --steps "$steps" "$@"
}

# see: where things are and what they look like, from scenes where only the picture can tell
stage "$SEE_STEPS" --data "$RUN/scenes-easy" --dense-weight 1.0 --dense-object-share 0.5 --dense-glyph-weight 0.2 --task-weights "caption=0.3,caption_long=0.1"
# the tower's job: shape and colour read from the picture (pointing, flat at 0.42 on the 1-6 object dev
# scenes through 4,000 steps of 1-2 object ones, is the full stage's figure; it was dev_point=0.6
# and dev_qa_color=0.7 here until step 8,000)
$PY -m moonlet.train.gate "$RUN/train/metrics.jsonl" --stage see dev_qa_color=0.6 dev_qa_shape=0.6

# full: every scene, captions at full weight; from step 12,808 reading weighted up (it answered
# "There is no text." to every read question through 205,000 images): read questions 4x, glyphs 0.6;
# from step 15,250 the two-object questions too (position rows' loss sat at chance, ln 2 / 2 per
# row, for 2,400 steps): position 3x, count_relative 2x
FULL=(--data "$RUN/scenes-easy" "$RUN/scenes-full" --dense-weight 0.5 --dense-object-share 0.5 --dense-glyph-weight 0.6
  --task-weights "caption=1,query_read=4,query_position=3,query_count_relative=2")
stage "$FULL_STEPS" "${FULL[@]}"
$PY -m moonlet.train.gate "$RUN/train/metrics.jsonl" --stage full dev_qa=0.85 dev_point=0.85 dev_map50=0.7

# cool-down branch from a copy of the state, then export
rm -rf "$RUN/cool" && mkdir -p "$RUN/cool" && cp -r "$STATE" "$RUN/cool/state"
"${TRAIN[@]}" --out "$RUN/cool/run" --profile moonlet-nano --state-dir "$RUN/cool/state" --resume \
  "${FULL[@]}" \
  --batch-size 16 --rows-per-image 16 --lr 1.5e-3 --lr-projection 3e-3 --warmup 300 --schedule wsd \
  --steps "$((FULL_STEPS + COOL))" --decay-steps "$COOL" --bin-sigma 4 --save-every 0 --eval-every 0 --log-every 25 \
  --device cpu
$M eval synthetic --data "$RUN/scenes-test" --model "$RUN/cool/run/model" --out "$RUN/eval" --batch-size 16
$PY -m moonlet.train.plot "$RUN/train/metrics.jsonl" --out docs/models/moonlet-nano-curves.png
mkdir -p moonlet/assets/moonlet-nano
cp "$RUN/cool/run/model/"{model.safetensors,config.json,tokenizer.json} moonlet/assets/moonlet-nano/
echo "installed moonlet/assets/moonlet-nano; scores in $RUN/eval/results.json"
