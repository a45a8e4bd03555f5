"""How much room hand-designed optimizers leave on the neural-art validation problems.

A learned optimizer can only beat tuned Adam where *some* update rule does better, so before more
meta-training this runs torch.optim's optimizers (and Adam with lr schedules) on the problems that
`l2o-train experiment=neural_art` validates on, and prints each one's mean loss at the horizon.

    .venv/bin/python scripts/neural_art_room.py adam:0.1 adam:0.2:cos rprop:0.01 lbfgs_ls:1:50
    .venv/bin/python scripts/neural_art_room.py --features random_shallow adam:0.316

A spec is KIND:LR[:EXTRA]: adam (EXTRA = cos | warm16 lr schedule, or a beta1 value), nadam, adamax,
rprop, lbfgs (one L-BFGS step per gradient, EXTRA = history), lbfgs_ls (strong-Wolfe line search
with at most `--steps` loss evaluations in all, EXTRA = history).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from l2o.evaluation.runners import run_torch_optimizer
from l2o.optimizees.base import split_seeds

CONF = Path(__file__).resolve().parents[1] / "conf"
SCHEDULES = {"cos": lambda t, T: 0.5 * (1 + math.cos(math.pi * t / T)), "warm16": lambda t, T: min(1.0, (t + 1) / 16)}
ELEMENTWISE = {"adam": torch.optim.Adam, "nadam": torch.optim.NAdam, "adamax": torch.optim.Adamax, "rprop": torch.optim.Rprop}


def _factory(kind: str, extra: list[str], steps: int):
    """A torch.optim factory for `run_torch_optimizer`, with Adam's β1 or lr schedule (LambdaLR) from EXTRA."""
    def make(params, lr: float) -> torch.optim.Optimizer:
        kw = {"step_sizes": (1e-6, 50 * lr)} if kind == "rprop" else {}
        if kind == "adam" and extra and extra[0] not in SCHEDULES:
            kw["betas"] = (float(extra[0]), 0.999)
        opt = ELEMENTWISE[kind](params, lr=lr, **kw)
        if kind == "adam" and extra and extra[0] in SCHEDULES:
            schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: SCHEDULES[extra[0]](t, steps))
            opt.register_step_post_hook(lambda *_: schedule.step())
        return opt
    return make


def final_loss(problem, spec: str, steps: int) -> float:
    kind, lr, *extra = spec.split(":")
    lr = float(lr)
    if kind in ELEMENTWISE:
        return run_torch_optimizer(_factory(kind, extra, steps), problem, steps, lr)[0][-1].mean().item()
    if kind not in ("lbfgs", "lbfgs_ls"):
        raise SystemExit(f"unknown optimizer kind {kind!r} in {spec!r}")
    # L-BFGS needs a closure; the neural-art loss does not depend on the step, so every call evaluates at 0
    params, state = problem.init_params().requires_grad_(True), problem.init_state()
    ls = kind == "lbfgs_ls"   # ls: the whole budget in one call, the line search spends the evaluations
    opt = torch.optim.LBFGS([params], lr=lr, history_size=int(extra[0]) if extra else 10, max_iter=steps if ls else 1,
                            max_eval=steps if ls else None, line_search_fn="strong_wolfe" if ls else None,
                            tolerance_grad=0.0, tolerance_change=0.0)

    def closure():
        opt.zero_grad()
        loss = problem.evaluate(params, 0, state)[0].sum()
        loss.backward()
        return loss

    for _ in range(1 if ls else steps):
        opt.step(closure)
    with torch.no_grad():
        return problem.evaluate(params, steps, state)[0].mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+", help="KIND:LR[:EXTRA], see above")
    parser.add_argument("--features", default="random_vgg19", help="optimizee.features.kind")
    parser.add_argument("--problems", type=int, default=4, help="validation problems (the training run's)")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=64, help="optimizee.size (pixels per side)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=neural_art", f"optimizee.features.kind={args.features}",
                                                 f"optimizee.size={args.size}"])
    problem = instantiate(cfg.optimizee).sample(split_seeds("val", args.problems))
    for spec in args.specs:
        start = time.perf_counter()
        loss = final_loss(problem, spec, args.steps)
        print(f"{spec:<20} loss at step {args.steps}: {loss:.4f}   ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
