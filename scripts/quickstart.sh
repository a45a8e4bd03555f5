#!/usr/bin/env bash
# Fresh machine -> results: make .venv, install l2o, meta-train the LSTM optimizer on random
# quadratics (quick schedule) and evaluate it against tuned SGD, RMSprop, Adam and NAG.
# Needs no data download. Results: outputs/quickstart/ (checkpoints, tb/) and outputs/quickstart/eval/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
run="${RUN_DIR:-outputs/quickstart}"
.venv/bin/l2o-train hydra.run.dir="$run" "$@"
.venv/bin/l2o-eval checkpoint="$run" hydra.run.dir="$run/eval"
