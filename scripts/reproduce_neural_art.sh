#!/usr/bin/env bash
# The paper's neural-art experiment: meta-train the LSTM optimizer on 64×64 stylisation with one
# style (experiment=neural_art), evaluate it on held-out content at 64×64 and 128×128 and with a
# style it never saw, each against the four tuned baselines, and write outputs/neural_art/REPORT.md
# (art.png: the loss curves; each evaluation's images.png: every optimizer's image at steps 8, 32, 128).
#   scripts/reproduce_neural_art.sh               # train + the three evaluations
#   SKIP_TRAIN=1 scripts/reproduce_neural_art.sh  # reuse outputs/neural_art/train
#   NAME=neural_art_vgg scripts/reproduce_neural_art.sh optimizee.features.kind=random_vgg19
#                                                 # a variant, in outputs/neural_art_vgg/
# Extra arguments go to every l2o-train / l2o-eval call (e.g. optimizee.features.kind=random_shallow).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
name=${NAME:-neural_art}
root=outputs/$name
mkdir -p "$root"
args=(experiment_name="$name" "$@")   # every call: the variant's folder and the extra arguments
timed() { local label=$1; shift; /usr/bin/time -f "$label: %e s" -a -o "$root/times.txt" "$@"; }
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  rm -f "$root/times.txt"
  timed "train neural_art (64×64)" .venv/bin/l2o-train experiment=neural_art "${args[@]}"
fi
timed "eval 64×64" .venv/bin/l2o-eval experiment=neural_art "${args[@]}"
timed "eval 128×128" .venv/bin/l2o-eval experiment=neural_art_128 "${args[@]}"
timed "eval new style" .venv/bin/l2o-eval experiment=neural_art_newstyle "${args[@]}"
.venv/bin/python scripts/art_report.py "$root"
