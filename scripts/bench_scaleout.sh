#!/usr/bin/env bash
# Speed-ups of scale-out on this machine, as wall-clock seconds (and meta-training throughput):
#  - a 4-job l2o-train sweep with Hydra's basic launcher (one job after another, all cores each)
#    against hydra-joblib-launcher with 2 workers (threads=1 each);
#  - meta-training one process (all cores) against torchrun with 2 processes (threads=1 each)
#    with the same total meta-batch: the quadratic (128 functions per epoch) and MNIST (2 MLPs).
# Run it alone on the machine. Results: outputs/bench_scaleout/times.txt
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=outputs/bench_scaleout
rm -rf "$OUT" && mkdir -p "$OUT"
BIN=.venv/bin

time_it() {  # name command...: wall seconds into times.txt
  local name=$1; shift
  /usr/bin/time -f "$name %e" -a -o "$OUT/times.txt" "$@" > "$OUT/$name.log" 2>&1
  tail -1 "$OUT/times.txt"
}

SWEEP=(--multirun "schedule.meta_lr=1e-3,3e-3,1e-2,3e-2" progress=false)
time_it sweep_basic "$BIN/l2o-train" "${SWEEP[@]}" "hydra.sweep.dir=$OUT/sweep_basic"
time_it sweep_joblib2 "$BIN/l2o-train" "${SWEEP[@]}" hydra/launcher=local_parallel threads=1 "hydra.sweep.dir=$OUT/sweep_joblib2"

QUAD=(schedule.problems_per_epoch=128 schedule.epochs=200 schedule.val_every=100 progress=false)
time_it quad_1proc "$BIN/l2o-train" "${QUAD[@]}" "hydra.run.dir=$OUT/quad_1proc"
time_it quad_2proc "$BIN/torchrun" --standalone --nproc_per_node=2 --no-python "$BIN/l2o-train" "${QUAD[@]}" threads=1 "hydra.run.dir=$OUT/quad_2proc"

MNIST=(experiment=mnist compile=false schedule.problems_per_epoch=2 schedule.epochs=20 truncation=constant schedule.val_every=20 schedule.num_val=2 progress=false)
time_it mnist_1proc "$BIN/l2o-train" "${MNIST[@]}" "hydra.run.dir=$OUT/mnist_1proc"
time_it mnist_2proc "$BIN/torchrun" --standalone --nproc_per_node=2 --no-python "$BIN/l2o-train" "${MNIST[@]}" threads=1 "hydra.run.dir=$OUT/mnist_2proc"

"$BIN/python" - "$OUT" <<'PY'
import statistics, sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
out = Path(sys.argv[1])
wall = dict(line.split() for line in (out / "times.txt").read_text().splitlines())
print(f"4-job sweep: basic {wall['sweep_basic']} s, joblib x2 {wall['sweep_joblib2']} s, "
      f"speed-up {float(wall['sweep_basic']) / float(wall['sweep_joblib2']):.2f}x")
for name in ("quad", "mnist"):
    rate = {}
    for p in ("1proc", "2proc"):
        acc = EventAccumulator(str(out / f"{name}_{p}" / "tb")); acc.Reload()
        rate[p] = statistics.median(e.value for e in acc.Scalars("perf/optimizee_steps_per_s"))
    print(f"{name} meta-training: wall 1 process {wall[name + '_1proc']} s, 2 processes {wall[name + '_2proc']} s "
          f"({float(wall[name + '_1proc']) / float(wall[name + '_2proc']):.2f}x); median optimizee steps/s "
          f"{rate['1proc']:.0f} vs {rate['2proc']:.0f} ({rate['2proc'] / rate['1proc']:.2f}x)")
PY
