#!/usr/bin/env bash
# The GPU check, one prepared script (about 8 minutes on an H100/H200):
#   1. the `cuda` tests (fused/chunked paths, the unroll, LearnedOptimizer: GPU against CPU),
#   2. scripts/bench.py --device cuda,
#   3. a timed slice of the MNIST `paper` schedule (constant T = 100, the authors' 10,000 epochs),
#      extrapolated to the whole.
# Usage, from anywhere:  scripts/gpu_check.sh [OUT_DIR]          (default outputs/gpu_check)
#   SLICE_EPOCHS=300      epochs of the paper schedule to time
#   GPU_CHECK_SMOKE=1     run every stage tiny on the CPU (checks the script itself, no GPU needed)
# Python: .venv if present (scripts/env.sh), else the machine's python3 with torch; hydra-core and
# omegaconf come from wheels in .whl/ when missing. MNIST: $L2O_DATA_DIR, ../shared/data, or the
# gzipped raw files in .gpu_data/ (unpacked to /tmp). Each stage's log goes to OUT_DIR.
# For a device machine without this repo's venv, make both folders once here (git-ignored through
# .git/info/exclude) and carry them:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl hydra-core==1.3.8 omegaconf==2.3.1
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
#   mkdir -p .gpu_data && for f in ../shared/data/mnist/MNIST/raw/*; do gzip -c "$f" > .gpu_data/$(basename "$f").gz; done
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/gpu_check}
mkdir -p "$OUT"
SMOKE=${GPU_CHECK_SMOKE:-0}
SLICE_EPOCHS=${SLICE_EPOCHS:-300}
export PYTHONUNBUFFERED=1

if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
  if ! $PY -c "import hydra, omegaconf" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/l2o-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/l2o-site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${L2O_DATA_DIR:-}" ]; then
  if [ -d ../shared/data/mnist ]; then
    export L2O_DATA_DIR=$(cd ../shared/data && pwd)
  else
    mkdir -p /tmp/l2o-data/mnist/MNIST/raw
    for f in .gpu_data/*.gz; do gunzip -c "$f" > /tmp/l2o-data/mnist/MNIST/raw/$(basename "$f" .gz); done
    export L2O_DATA_DIR=/tmp/l2o-data
  fi
fi

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu; MARK="cuda"; TESTS=tests/test_fast_paths.py; BENCH=(--skip quadratic mnist 1m 10m --runs 2)
  SLICE_EPOCHS=4; TRAIN=(schedule.problems_per_epoch=1 schedule.val_every=2 schedule.num_val=2 compile=false)
else
  DEVICE=cuda; MARK="cuda"; TESTS=tests/test_cuda.py; BENCH=(--runs 5); TRAIN=()
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')" || exit 1
fi
status=0
{ $PY - <<'EOF'
import torch, platform
print("torch", torch.__version__, "python", platform.python_version(), "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
EOF
} 2>&1 | tee "$OUT/machine.txt"

echo "== 1. tests (-m $MARK) on $TESTS"
if [ "$SMOKE" = 1 ]; then
  $PY -m pytest -q -p no:cacheprovider "$TESTS" 2>&1 | tee "$OUT/tests.log" || status=1
else
  $PY -m pytest -q -p no:cacheprovider -m "$MARK" "$TESTS" 2>&1 | tee "$OUT/tests.log" || status=1
fi

echo "== 2. benchmark on $DEVICE"
$PY scripts/bench.py --device "$DEVICE" "${BENCH[@]}" 2>&1 | tee "$OUT/bench.log" || status=1

echo "== 3. MNIST paper schedule: $SLICE_EPOCHS epochs on $DEVICE, extrapolated to 10,000"
rm -rf "$OUT/paper_slice"  # a fresh slice every time
start=$(date +%s.%N)
$PY -m l2o.cli.train experiment=mnist schedule=paper truncation=constant device="$DEVICE" \
  schedule.epochs="$SLICE_EPOCHS" progress=false hydra.run.dir="$OUT/paper_slice" "${TRAIN[@]}" \
  > "$OUT/paper_slice.log" 2>&1 || status=1
end=$(date +%s.%N)
tail -n 5 "$OUT/paper_slice.log"
$PY - "$start" "$end" "$SLICE_EPOCHS" "$OUT/paper_slice/tb" <<'EOF' | tee "$OUT/paper_slice.txt"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
start, end, epochs, tb = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
wall = end - start
acc = EventAccumulator(tb)
acc.Reload()
ev = acc.Scalars("meta/loss")  # one per epoch, with its wall time
k = len(ev) // 5  # from the 20% mark: compile and warm-up excluded
per_epoch = (ev[-1].wall_time - ev[k].wall_time) / max(1, ev[-1].step - ev[k].step)
print(f"paper schedule slice: {epochs} epochs in {wall:.1f} s wall (process start, data and compile included); "
      f"steady state {per_epoch * 1e3:.1f} ms/epoch (epochs {ev[k].step}-{ev[-1].step}, validation included); "
      f"10,000 epochs: {(wall - len(ev) * per_epoch + 10_000 * per_epoch) / 60:.1f} min extrapolated")
EOF
echo "gpu_check: logs in $OUT (exit $status)"
exit $status
