#!/usr/bin/env bash
# The whole MNIST reproduction: train once (experiment=mnist, <= 30 min on 2 CPU cores), run
# every evaluation preset and the architecture sweep, and write outputs/mnist/REPORT.md.
# Pass SKIP_TRAIN=1 to reuse an existing outputs/mnist/train; extra args go to l2o-train.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  mkdir -p outputs/mnist
  /usr/bin/time -f "%e s" -o outputs/mnist/train_time.txt .venv/bin/l2o-train experiment=mnist "$@"
fi
rm -f outputs/mnist/eval_times.txt
for preset in mnist mnist_steps200 mnist_units40 mnist_layers2 mnist_relu; do
  /usr/bin/time -f "$preset: %e s" -a -o outputs/mnist/eval_times.txt .venv/bin/l2o-eval experiment=$preset
done
/usr/bin/time -f "mnist_sweep: %e s" -a -o outputs/mnist/eval_times.txt .venv/bin/l2o-eval --multirun experiment=mnist_sweep
.venv/bin/python scripts/mnist_report.py outputs/mnist
echo "report: outputs/mnist/REPORT.md"
