"""Run an optimizer on a batch of problems and record f(θ_0..θ_T) for each problem."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from l2o.errors import L2OError
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
    the sum of per-problem losses gives every problem its own gradient. L-BFGS does not (its
    history's inner products span all parameters): it runs one per problem (`run_lbfgs`).
    """
    params = problem.init_params().requires_grad_(True)
    opt = factory([params]) if lr is None else factory([params], lr=lr)
    if isinstance(opt, torch.optim.LBFGS):
        return run_lbfgs(factory, problem, steps, lr)
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
    if isinstance(opt, torch.optim.LBFGS):  # θ after s gradient evaluations, as run_lbfgs counts them
        return {s: run_lbfgs(factory, problem, s, lr)[1] if s else _copy(params) for s in wanted}
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


class _Budget(Exception):
    """Raised inside L-BFGS's closure once the gradient evaluations are spent."""


def run_lbfgs(factory: OptimizerFactory, problem: Problem, steps: int, lr: float | None) -> tuple[Tensor, Tensor, None]:
    """L-BFGS (`torch.optim.LBFGS`, its history size, inner iterations and line search as
    configured), one optimizer per problem, on a budget of `steps` gradient evaluations each: a
    line search pays for every evaluation it makes, so the curve is comparable step for step with
    one-gradient-per-step optimizers. Losses (T+1, B): row k < T is the loss at the k-th gradient
    evaluation, row T the loss at the parameters L-BFGS ends with. Stateless problems only (the
    deterministic optimizees it applies to: quadratics, neural art)."""
    if problem.init_state() is not None:
        raise L2OError("L-BFGS needs a deterministic optimizee without state (quadratics, neural art), "
                       "not one with minibatches or batch-norm statistics.")
    theta0 = problem.init_params().detach()
    rows = [theta0[b].clone().requires_grad_(True) for b in range(theta0.shape[0])]
    losses = torch.full((steps + 1, len(rows)), float("nan"), dtype=theta0.dtype, device=theta0.device)
    for b, row in enumerate(rows):
        opt = factory([row]) if lr is None else factory([row], lr=lr)
        evals = 0

        def closure() -> Tensor:
            nonlocal evals
            if evals >= steps:
                raise _Budget
            opt.zero_grad(set_to_none=True)
            others = [r.detach() if i != b else r for i, r in enumerate(rows)]
            loss = problem.evaluate(torch.stack(others), evals, None)[0][b]
            loss.backward()
            losses[evals, b] = loss.detach()
            evals += 1
            return loss

        try:
            while evals < steps:
                opt.step(closure)
        except _Budget:
            pass
    final = torch.stack([r.detach() for r in rows])
    with torch.no_grad():
        losses[steps] = problem.evaluate(final, steps, None)[0]
    return losses, final, None
