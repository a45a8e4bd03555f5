"""Run an optimizer on a batch of problems and record f(θ_0..θ_T) for each problem."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from l2o.meta.unroll import rollout, start, unroll
from l2o.optimizees.base import OptimizeeState, Problem
from l2o.optimizers.base import OptimizerNet

OptimizerFactory = Callable[..., torch.optim.Optimizer]


StepHook = Callable[[int, Tensor, Tensor, Tensor, Tensor], None]   # (t, loss (B,), grad, θ_t, θ_{t+1})


def run_torch_optimizer(
    factory: OptimizerFactory, problem: Problem, steps: int, lr: float | None, on_step: StepHook | None = None
) -> tuple[Tensor, Tensor, OptimizeeState]:
    """Losses (T+1, B), final parameters (B, D) and final optimizee state of a torch.optim optimizer
    on all B problems at once; `on_step` sees every step (diagnostics: where the updates go).

    SGD, NAG, RMSprop and Adam act elementwise, so one optimizer over the stacked (B, D)
    parameters gives every problem exactly the trajectory it would have alone, and
    the sum of per-problem losses gives every problem its own gradient.
    """
    params = problem.init_params().requires_grad_(True)
    opt = factory([params]) if lr is None else factory([params], lr=lr)
    state = problem.init_state()
    losses = []
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        loss, state = problem.evaluate(params, t, state)
        loss.sum().backward()
        before = params.detach().clone() if on_step is not None else None
        opt.step()
        losses.append(loss.detach())
        if on_step is not None:
            on_step(t, loss.detach(), params.grad, before, params.detach())
    with torch.no_grad():
        losses.append(problem.evaluate(params, steps, state)[0])
    return torch.stack(losses), params.detach(), state


def run_learned(net: OptimizerNet, problem: Problem, steps: int) -> tuple[Tensor, Tensor, OptimizeeState]:
    """Losses (T+1, B), final parameters (B, D) and optimizee state of the learned optimizer (φ frozen)."""
    return rollout(net, problem, steps)


@torch.no_grad()
def _copy(params: Tensor) -> Tensor:
    return params.detach().clone()


def snapshots(optimizer: OptimizerNet | tuple[OptimizerFactory, float | None], problem: Problem,
              steps: Sequence[int]) -> dict[int, Tensor]:
    """θ_t (B, D) at each of `steps` along one trajectory: a learned optimizer (φ frozen), or a
    torch.optim (factory, lr), exactly as the evaluation runs them."""
    wanted = sorted(set(int(s) for s in steps))
    out: dict[int, Tensor] = {}
    if isinstance(optimizer, OptimizerNet):
        carry = start(optimizer, problem)
        for s in wanted:
            if s > carry.step:
                carry = unroll(optimizer, problem, carry, s - carry.step)[2]
            out[s] = _copy(carry.params)
        return out
    factory, lr = optimizer
    params = problem.init_params().requires_grad_(True)
    opt = factory([params]) if lr is None else factory([params], lr=lr)
    state = problem.init_state()
    for t in range(wanted[-1] + 1):
        if t in wanted:
            out[t] = _copy(params)
        if t == wanted[-1]:
            break
        opt.zero_grad(set_to_none=True)
        loss, state = problem.evaluate(params, t, state)
        loss.sum().backward()
        opt.step()
    return out
