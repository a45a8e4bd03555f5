#!/usr/bin/env bash
# The architecture table of the README: LSTM, LSTM+GAC and RNNprop, each meta-trained by one
# command on the quadratic and the MNIST preset, then evaluated together (same test problems,
# one tuning of the baselines) against tuned SGD/RMSprop/Adam/NAG at 100 and 200 steps on 100
# test problems. Writes outputs/architectures/TABLE.md. A training whose run dir already has a
# result.json is skipped (rerun to continue after a stop); about 2 h on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=outputs/architectures
mkdir -p "$OUT"
BIN=.venv/bin

train() {  # run_dir args...: meta-train unless done, wall time into $OUT/train_times.txt
  local dir=$1; shift
  if [ -f "$dir/result.json" ]; then echo "skip $dir (done)"; return; fi
  /usr/bin/time -f "$dir %e s" -a -o "$OUT/train_times.txt" "$BIN/l2o-train" "$@" hydra.run.dir="$dir" progress=false
}

# MNIST: the README's own command for the LSTM, the same preset for the other two
train outputs/mnist/train experiment=mnist
# quadratics (quick schedule): GAC with the quadratic LSTM's inputs (raw gradient, output × 1)
train "$OUT/quadratic/lstm" experiment=quadratic
train "$OUT/quadratic/lstm_gac" experiment=quadratic optimizer=lstm_gac optimizer.preprocess_p=null optimizer.output_scale=1.0
train "$OUT/quadratic/rnnprop" experiment=quadratic optimizer=rnnprop
for steps in 100 200; do
  "$BIN/l2o-eval" checkpoint="$OUT/quadratic/lstm" +learned.lstm_gac="$OUT/quadratic/lstm_gac" \
    +learned.rnnprop="$OUT/quadratic/rnnprop" steps=$steps hydra.run.dir="$OUT/quadratic/eval$steps" progress=false
done
train outputs/mnist_gac/train experiment=mnist optimizer=lstm_gac experiment_name=mnist_gac
train outputs/mnist_rnnprop/train experiment=mnist optimizer=rnnprop experiment_name=mnist_rnnprop
for preset in mnist mnist_steps200; do
  /usr/bin/time -f "$preset eval %e s" -a -o "$OUT/eval_times.txt" "$BIN/l2o-eval" experiment=$preset \
    +learned.lstm_gac=outputs/mnist_gac/train +learned.rnnprop=outputs/mnist_rnnprop/train \
    hydra.run.dir="$OUT/$preset" progress=false
done
"$BIN/python" scripts/architectures_table.py "$OUT"
echo "table: $OUT/TABLE.md"
