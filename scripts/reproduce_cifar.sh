#!/usr/bin/env bash
# The paper's CIFAR experiments: meta-train the two-LSTM optimizer on CIFAR-10, LSTM-sub on the
# labels 5-9 and a one-LSTM optimizer for comparison; evaluate on CIFAR-10 (with the one-LSTM
# optimizer on the same problems), CIFAR-5 and CIFAR-2 (labels 0-4 / 0-1, with LSTM-sub) against
# the four tuned baselines; write outputs/<size>/REPORT.md and cifar.png.
#   scripts/reproduce_cifar.sh            # 2 CPU cores: experiment=cifar10_cpu etc. (three trainings; cifar10_cpu
#                                         #   took 29 min alone on 2 cores, 2026-11-29; three evaluations, the
#                                         #   CIFAR-10 one 15 min alone with its tuning: README "CIFAR-10")
#   SIZE=paper scripts/reproduce_cifar.sh # the paper's sizes (experiment=cifar10 etc.; a GPU)
#   SKIP_TRAIN=1 ...                      # reuse the trained optimizers
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
suffix=$([ "${SIZE:-cpu}" = paper ] && echo "" || echo "_cpu")
root=outputs/cifar10$suffix
mkdir -p "$root"
timed() { local name=$1; shift; /usr/bin/time -f "$name: %e s" -a -o "$root/times.txt" "$@"; }
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  rm -f "$root/times.txt"
  timed "train cifar10$suffix (two LSTMs)" .venv/bin/l2o-train experiment=cifar10$suffix
  timed "train cifar_sub$suffix (LSTM-sub, labels 5-9)" .venv/bin/l2o-train experiment=cifar_sub$suffix
  timed "train cifar10${suffix}_lstm1 (one LSTM)" .venv/bin/l2o-train experiment=cifar10$suffix optimizer=lstm_single \
    experiment_name=cifar10${suffix}_lstm1
fi
timed "eval CIFAR-10" .venv/bin/l2o-eval experiment=cifar10$suffix +learned.lstm_one_net=outputs/cifar10${suffix}_lstm1/train
timed "eval CIFAR-5" .venv/bin/l2o-eval experiment=cifar5$suffix
timed "eval CIFAR-2" .venv/bin/l2o-eval experiment=cifar2$suffix
.venv/bin/python scripts/cifar_report.py "$root"
