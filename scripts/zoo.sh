#!/usr/bin/env bash
# Beyond the paper: the zoo table. Each architecture (LSTM, LSTM+GAC, RNNprop) meta-trained with
# the paper's recipe (experiment=quadratic / mnist) and with the stable one (quadratic_stable /
# mnist_stable: adaptive curriculum + imitation of Adam + random scaling), each evaluated at 100,
# 1,000 and 10,000 steps against the four tuned baselines; writes outputs/zoo/ZOO.md
# (python scripts/zoo.py outputs/zoo). 20 test problems per cell. Quadratics: baselines tuned over the
# evaluation's own horizon up to 1,000 steps (20 problems), over the first 1,000 steps (10 problems)
# for 10,000. MNIST at 1,000 and 10,000 steps: the long-horizon presets' protocol (experiment=
# mnist_steps1000 / mnist_steps10000: tuned over the first 1,000 steps on 10 / 5 problems, because
# tuning is most of an MNIST evaluation's cost on CPU). The baselines are tuned and
# run once per setting and horizon: the first cell evaluated there does it, the others reuse its
# tuned learning rates and baseline curves on the same test problems (l2o-eval baselines_from=).
# Hours on 2 CPU cores. Measured at one thread each, two parts side by side (2-core AMD EPYC): an
# MNIST training 31-76 min, a 10,000-step MNIST cell ~37 min with its baselines' tuning and runs,
# a 1,000-step cell 3 min reusing them.
# Rerunning continues: finished runs are skipped, stopped ones resumed.
#   scripts/zoo.sh                                    # everything
#   ARCHS=lstm RECIPES=stable SETTINGS=mnist STEPS="100 1000" scripts/zoo.sh   # a part
#   WORKERS=1 THREADS=1 scripts/zoo.sh               # one core per job (two parts side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
root=${ZOO_ROOT:-outputs/zoo}
mkdir -p "$root"
for setting in ${SETTINGS:-quadratic mnist}; do
  for arch in ${ARCHS:-lstm lstm_gac rnnprop}; do
    for recipe in ${RECIPES:-paper stable}; do
      name=${setting}_${arch}_${recipe}
      run=$root/$name
      preset=$setting$([ "$recipe" = stable ] && echo _stable || true)
      # the architecture, as the README's "Architectures" trains it: on quadratics the LSTMs take the
      # raw gradient with output × 1 (the quadratic preset's lstm_raw); the same args go to l2o-eval
      case $setting/$arch in
        quadratic/lstm) arch_args=() ;;
        quadratic/lstm_gac) arch_args=(optimizer=lstm_gac optimizer.preprocess_p=null optimizer.output_scale=1.0) ;;
        *) arch_args=(optimizer=$arch) ;;
      esac
      if [ ! -f "$run/train/result.json" ]; then
        resume=$([ -f "$run/train/checkpoints/last.pt" ] && echo true || echo false)
        /usr/bin/time -f "train $name: %e s" -a -o "$root/times.txt" \
          .venv/bin/l2o-train experiment=$preset "${arch_args[@]}" hydra.run.dir="$run/train" resume=$resume \
          ${THREADS:+threads=$THREADS}
      fi
      for steps in ${STEPS:-100 1000 10000}; do
        out=$run/steps$steps
        [ -f "$out/summary.json" ] && continue
        resume=$([ -d "$out/partial" ] && echo true || echo false)
        if [ "$setting" = mnist ] && [ -f conf/experiment/mnist_steps$steps.yaml ]; then
          protocol=(experiment=mnist_steps$steps)   # its steps, test problems and tuning
        else
          protocol=(experiment=$setting steps=$steps num_test=20 chunk_problems=5
                    tuning.steps=$(( steps < 1000 ? steps : 1000 )) tuning.num_problems=$(( steps < 10000 ? 20 : 10 )))
        fi
        shared=()   # another cell's finished evaluation at this setting and horizon: reuse its baselines
        for done in "$root"/${setting}_*/steps$steps/summary.json; do
          [ -f "$done" ] && shared=(baselines_from="$(dirname "$done")") && break
        done
        .venv/bin/l2o-eval "${protocol[@]}" "${arch_args[@]}" checkpoint="$run/train" workers=${WORKERS:-2} \
          ${THREADS:+threads=$THREADS} "${shared[@]}" hydra.run.dir="$out" resume=$resume
      done
    done
  done
done
.venv/bin/python scripts/zoo.py "$root"
