#!/usr/bin/env bash
# The architecture table of the README: LSTM, LSTM+GAC and RNNprop, each meta-trained by one
# command on the quadratic and the MNIST preset, evaluated against tuned SGD/RMSprop/Adam/NAG at
# 100 and 200 steps on 100 test problems. The baselines are tuned once per setting (in the LSTM's
# evaluation); the other architectures run on the same test problems (compare=[]). Writes
# outputs/architectures/TABLE.md. A finished training (result.json) or evaluation (summary.json)
# is skipped and a stopped training resumes, so rerunning continues after a stop.
# About 2.5 h on 2 CPU cores (PARALLEL=1: see below).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=outputs/architectures
mkdir -p "$OUT"
BIN=.venv/bin

train() {  # run_dir args...: meta-train unless done; wall time into $OUT/train_times.txt
  local dir=$1; shift
  if [ -f "$dir/result.json" ]; then echo "skip $dir (done)"; return; fi
  # resume=true: a training stopped part-way continues from its last checkpoint (a new dir starts fresh)
  /usr/bin/time -f "$dir %e s" -a -o "$OUT/train_times.txt" "$BIN/l2o-train" "$@" hydra.run.dir="$dir" progress=false resume=true
}
evaluate() {  # out_dir args...: evaluate unless done; wall time into $OUT/eval_times.txt
  local dir=$1; shift
  if [ -f "$dir/summary.json" ]; then echo "skip $dir (done)"; return; fi
  /usr/bin/time -f "$dir %e s" -a -o "$OUT/eval_times.txt" "$BIN/l2o-eval" "$@" hydra.run.dir="$dir" progress=false
}

# MNIST LSTM: the README's own command, and its two evaluations with the tuned baselines
train outputs/mnist/train experiment=mnist
evaluate "$OUT/mnist/100" experiment=mnist
evaluate "$OUT/mnist/200" experiment=mnist_steps200
# quadratics (quick schedule): GAC with the quadratic LSTM's inputs (raw gradient, output × 1)
train "$OUT/quadratic/lstm" experiment=quadratic
train "$OUT/quadratic/lstm_gac" experiment=quadratic optimizer=lstm_gac optimizer.preprocess_p=null optimizer.output_scale=1.0
train "$OUT/quadratic/rnnprop" experiment=quadratic optimizer=rnnprop
for steps in 100 200; do
  evaluate "$OUT/quadratic/$steps" checkpoint="$OUT/quadratic/lstm" +learned.lstm_gac="$OUT/quadratic/lstm_gac" \
    +learned.rnnprop="$OUT/quadratic/rnnprop" steps=$steps
done
# MNIST LSTM+GAC and RNNprop: the same preset; evaluated without re-tuning the baselines.
# PARALLEL=1 trains both at once with one thread each (on 2 cores slightly more throughput than
# one after the other: small LSTM kernels do not use 2 threads fully).
if [ "${PARALLEL:-0}" = 1 ]; then
  train outputs/mnist_lstm_gac/train experiment=mnist optimizer=lstm_gac experiment_name=mnist_lstm_gac threads=1 &
  train outputs/mnist_rnnprop/train experiment=mnist optimizer=rnnprop experiment_name=mnist_rnnprop threads=1 &
  wait
fi
for arch in lstm_gac rnnprop; do
  train outputs/mnist_$arch/train experiment=mnist optimizer=$arch experiment_name=mnist_$arch
  evaluate "$OUT/mnist/100_$arch" experiment=mnist checkpoint=outputs/mnist_$arch/train name=$arch compare=[]
  evaluate "$OUT/mnist/200_$arch" experiment=mnist_steps200 checkpoint=outputs/mnist_$arch/train name=$arch compare=[]
done
"$BIN/python" scripts/architectures_table.py "$OUT"
echo "table: $OUT/TABLE.md"
