"""Where a learned optimizer's steps go on a long run, next to Adam's: a diagnostic for why one levels off.

Every `--every` steps, on the `--experiment`'s test problems, it prints the mean minibatch loss over
those `--every` steps (one minibatch's loss is too noisy to compare) and, for that step's update
u = θ_{t+1} − θ_t:
  - never-grad: the share of coordinates whose gradient has been exactly 0 at every step so far
    (MNIST: input weights of pixels blank in every minibatch seen), and mean(u) and mean(|u|) over
    them: SGD, Adam and any optimizer odd in the gradient history leave them alone, so nonzero
    values there are drift;
  - |u| rest: mean(|u|) over the other coordinates;
and at the end the mean and largest |θ_T − θ_0| of the first tensor (MNIST: the input layer).

    python scripts/update_stats.py outputs/study/cpu/long_horizon/train/lstm_stable --steps 1000 --every 100
    python scripts/update_stats.py CKPT --odd          # the same φ, run as an odd function (optimizer.odd)
    python scripts/update_stats.py CKPT --steps 10000 --every 1000 --problems 4 --step-factor 0.33
                                                       # every step × 0.33: does a smaller step keep it falling?
"""
from __future__ import annotations

import argparse
import functools

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from l2o.checkpoint import load_checkpoint, net_from_checkpoint
from l2o.cli.common import CONF_DIR
from l2o.evaluation.runners import run_torch_optimizer
from l2o.meta.unroll import start, unroll
from l2o.optimizees.base import split_seeds
from l2o.optimizers import CoordinatewiseLSTM
from l2o.optimizers.parts import Odd


def report(name: str, t: int, loss: float, never: torch.Tensor, u: torch.Tensor) -> None:
    rest = ~never
    zs = f"mean(u) {u[never].mean().item():+.2e} mean|u| {u[never].abs().mean().item():.2e}" if never.any() else "-"
    print(f"{name:>7} t={t:6d} loss {loss:.4g}  never-grad {never.float().mean().item():.3f}: {zs}"
          f"  |u| rest {u[rest].abs().mean().item():.2e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a checkpoint or an l2o-train run directory")
    ap.add_argument("--experiment", default="mnist", help="whose optimizee and test problems (default mnist)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--problems", type=int, default=1)
    ap.add_argument("--adam-lr", type=float, default=0.01, help="Adam's learning rate (0: no Adam)")
    ap.add_argument("--odd", action="store_true", help="run the φ as an odd function of the gradient history")
    ap.add_argument("--step-factor", type=float, default=1.0,
                    help="multiply the φ's output scale (every step) by this: is the step size what limits it?")
    args = ap.parse_args()
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={args.experiment}"])
    problem = instantiate(cfg.optimizee).sample(split_seeds("test", args.problems))
    first = problem.spec.layout(1).sizes[0]

    net = net_from_checkpoint(load_checkpoint(args.checkpoint))
    if args.odd:
        net = Odd(net)
    if args.step_factor != 1.0:
        scaled = [m for m in net.modules() if isinstance(m, CoordinatewiseLSTM)]
        if not scaled:
            ap.error(f"--step-factor: {type(net).__name__} has no output_scale to multiply")
        for m in scaled:
            m.output_scale *= args.step_factor
    carry = start(net, problem)
    theta0, never = carry.params.clone(), torch.ones_like(carry.params, dtype=torch.bool)
    window: list[float] = []  # the minibatch losses since the last report
    while carry.step < args.steps:  # one step at a time; unroll detaches, so nothing accumulates
        t, before = carry.step, carry.params
        window.append(carry.loss.mean().item())
        never &= carry.grad == 0
        _, _, carry = unroll(net, problem, carry, 1)
        if t and t % args.every == 0:
            report("odd" if args.odd else "learned", t, sum(window) / len(window), never, carry.params - before)
            window.clear()
    moved = (carry.params - theta0)[:, :first].abs()
    print(f"learned: |θ_T − θ_0| of the first tensor: mean {moved.mean().item():.3g}, max {moved.max().item():.3g}")

    if args.adam_lr > 0:  # the evaluation's own runner, watched step by step
        never, window = torch.ones_like(theta0, dtype=torch.bool), []

        def watch(t: int, loss: torch.Tensor, grad: torch.Tensor, before: torch.Tensor, after: torch.Tensor) -> None:
            never.logical_and_(grad == 0)
            window.append(loss.mean().item())
            if t and t % args.every == 0:
                report("adam", t, sum(window) / len(window), never, after - before)
                window.clear()

        _, params, _ = run_torch_optimizer(functools.partial(torch.optim.Adam), problem, args.steps, args.adam_lr, watch)
        moved = (params - theta0)[:, :first].abs()
        print(f"adam: |θ_T − θ_0| of the first tensor: mean {moved.mean().item():.3g}, max {moved.max().item():.3g}")


if __name__ == "__main__":
    main()
