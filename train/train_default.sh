#!/usr/bin/env bash
# Train the default weights: the map stage, then the editing stage on top of it (one GPU, bf16).
#
#   bash train/train_default.sh FACES_DIR IDENTITIES_CSV VGG_WEIGHTS OUT_DIR [MAP_MINUTES] [EDIT_MINUTES]
#
# FACES_DIR holds plain aligned face crops (masks are rendered on the fly); the validation split is
# identity-disjoint. OUT_DIR/edit/pipeline is the finished pipeline (fp16), OUT_DIR/edit/best the best by
# validation PSNR. Set ACCELERATE_CONFIG to train elsewhere (default: train/configs/accelerate_1gpu.yaml).
set -euo pipefail
faces=$1 identities=$2 vgg=$3 out=$4 map_minutes=${5:-2} edit_minutes=${6:-6}
here=$(cd "$(dirname "$0")" && pwd)
launch=(python -m accelerate.commands.launch --config_file "${ACCELERATE_CONFIG:-$here/configs/accelerate_1gpu.yaml}")
config=${TRAIN_CONFIG:-$here/configs/default_128.yaml}
data=(--faces "$faces" --identities "$identities")

"${launch[@]}" "$here/train.py" --config "$config" --stage map "${data[@]}" \
    --output-dir "$out/map" --max-minutes "$map_minutes"
"${launch[@]}" "$here/train.py" --config "$config" --stage edit "${data[@]}" --init "$out/map/pipeline" \
    --perceptual-weights "$vgg" --output-dir "$out/edit" --max-minutes "$edit_minutes" --save-dtype fp16
