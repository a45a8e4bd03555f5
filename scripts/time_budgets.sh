#!/usr/bin/env bash
# The CIFAR-10 CPU preset's time budgets, measured: meta-training (<= 60 min on 2 cores), its
# evaluation at 200 steps (<= 30 min) and at the paper's 1,000 steps (<= 90 min), each command
# run from scratch, one after the other, as a user runs them. Prints the CPU, the load before each
# command (other work on the cores makes the times meaningless) and each command's wall and CPU time.
#
#   scripts/time_budgets.sh [OUT_DIR] [STAGE...]     # stages: train eval eval1000 (default: all three)
#   scripts/time_budgets.sh outputs/time_budgets train eval
#
# OUT_DIR (default outputs/time_budgets) gets each command's log (STAGE.log); it must not hold the stages' run directories yet: a resumed
# command would time only its remainder. Not a test: nothing asserts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out="${1:-outputs/time_budgets}"
shift || true
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(train eval eval1000)

declare -A cmd=(
  [train]="l2o-train experiment=cifar10_cpu hydra.run.dir=$out/train"
  [eval]="l2o-eval experiment=cifar10_cpu checkpoint=$out/train hydra.run.dir=$out/eval"
  [eval1000]="l2o-eval experiment=cifar10_cpu protocol=cifar_cpu1000 checkpoint=$out/train hydra.run.dir=$out/eval1000"
)
declare -A budget=([train]=60 [eval]=30 [eval1000]=90)
for s in "${stages[@]}"; do
  [ -n "${cmd[$s]:-}" ] || { echo "unknown stage '$s' (train, eval or eval1000)" >&2; exit 2; }
  [ ! -e "$out/$s" ] || { echo "$out/$s exists: a resumed run would time only its remainder; pick another OUT_DIR" >&2; exit 2; }
done
[ -e "$out/train/checkpoints/best.pt" ] || [[ " ${stages[*]} " == *" train "* ]] \
  || { echo "$out/train has no trained checkpoint: run the train stage first" >&2; exit 2; }

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; torch $(.venv/bin/python -c 'import torch; print(torch.__version__)')"
mkdir -p "$out"
TIMEFORMAT="%R %U %S"
for s in "${stages[@]}"; do
  echo "== $s: ${cmd[$s]}"
  echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  # the command's own output goes to OUT_DIR/STAGE.log; `time` writes its line to stderr
  if ! t=$( { time .venv/bin/${cmd[$s]} > "$out/$s.log" 2>&1; } 2>&1 ); then
    echo "   $s failed; the end of $out/$s.log:" >&2; tail -n 20 "$out/$s.log" >&2; exit 1
  fi
  read -r real user sys <<< "$t"
  python3 - "$s" "$real" "$user" "$sys" "${budget[$s]}" <<'EOF'
import sys
s, real, user, sys_, budget = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5])
print(f"   {s}: {real / 60:.1f} min wall ({(user + sys_) / 60:.1f} min of CPU time); budget {budget} min: "
      + ("within" if real <= budget * 60 else "OVER"))
EOF
done
