"""Peak memory (max RSS) of a trained optimizer's no-grad rollout, as `l2o-eval` runs it, for
sizing a long evaluation before it runs, and for catching memory that grows with the steps.

    python scripts/rollout_memory.py CHECKPOINT --steps 100 1600 [--problems 5] [--compile]

Each horizon runs in a fresh process (a process's peak RSS only grows). Prints one JSON line per
horizon and the growth per step between the first and the last. Not a test: nothing asserts.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(checkpoint: str, steps: int, problems: int, compile: bool) -> dict:
    import torch

    from l2o.checkpoint import load_checkpoint, net_from_checkpoint
    from l2o.cli.common import build
    from l2o.meta.unroll import rollout
    from l2o.optimizees.base import split_seeds

    torch.set_num_threads(1)
    ckpt = load_checkpoint(checkpoint)
    net = net_from_checkpoint(ckpt)
    if compile:
        net.compile_layers()
    problem = build(ckpt["optimizee"]["config"], "optimizee").sample(split_seeds("test", problems), torch.device("cpu"))
    losses = rollout(net, problem, steps)[0]
    return {"checkpoint": checkpoint, "architecture": net.short_name(), "compile": compile, "problems": problems,
            "steps": steps, "coordinates": problem.layout.size, "final_loss": losses[-1].mean().item(),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a .pt file or an l2o-train run directory")
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 1600])
    ap.add_argument("--problems", type=int, default=5, help="test problems at once (l2o-eval's chunk_problems)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the layers (the MNIST presets' compile=true)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)  # internal: one measurement
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.checkpoint, args.child, args.problems, args.compile)))
        return
    rows = []
    for steps in args.steps:
        cmd = [sys.executable, __file__, args.checkpoint, "--problems", str(args.problems), "--child", str(steps)]
        out = subprocess.run(cmd + (["--compile"] if args.compile else []), check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        per_step = (last["max_rss_mb"] - first["max_rss_mb"]) / (last["steps"] - first["steps"])
        print(f"growth: {per_step:.3f} MB per step between {first['steps']} and {last['steps']} steps")


if __name__ == "__main__":
    main()
