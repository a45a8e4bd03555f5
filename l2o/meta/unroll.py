"""Truncated unrolls of a learned optimizer on a batch of problems.

The optimizee gradient ∇_t is taken with `torch.autograd.grad` on the current step's
graph only (PERF-NOTES: a `.backward()` inside the unroll walks the whole unroll every
step). Unless `second_derivatives` is set, ∇_t is a constant for the meta-gradient, as in
the paper; θ_t still depends on φ through the earlier updates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from l2o.optimizees.base import OptimizeeState, Problem, detach_state
from l2o.optimizers.base import OptimizerNet, State

# meta-loss term of one step: (per-instance losses (B,), step t >= 1) -> scalar
StepLoss = Callable[[Tensor, int], Tensor]


@dataclass
class Carry:
    """What one unroll hands to the next, detached: θ_t, ∇f(θ_t), f(θ_t), the learned
    optimizer's state and the optimizee's own state (e.g. batch-norm statistics)."""

    params: Tensor
    grad: Tensor
    loss: Tensor
    state: State
    step: int
    problem_state: OptimizeeState = None


def start(net: OptimizerNet, problem: Problem) -> Carry:
    """θ0 of every instance, its loss and gradient, and the initial states."""
    params = problem.init_params().requires_grad_(True)
    loss, problem_state = problem.evaluate(params, 0, problem.init_state())
    (grad,) = torch.autograd.grad(loss.sum(), params)
    state = net.init_state(problem.layout, device=params.device, dtype=params.dtype)
    return Carry(params.detach(), grad, loss.detach(), state, 0, detach_state(problem_state))


def unroll(
    net: OptimizerNet,
    problem: Problem,
    carry: Carry,
    num_steps: int,
    step_loss: StepLoss | None = None,
    second_derivatives: bool = False,
) -> tuple[Tensor, Tensor, Carry]:
    """Run `num_steps` learned updates from `carry`.

    With `step_loss` the returned meta-loss Σ_k step_loss(f(θ_k), k) keeps its graph to φ;
    with `step_loss=None` nothing is recorded for a meta-gradient (evaluation) and the
    meta-loss is 0. Returns (meta-loss, losses (num_steps, B), carry).
    """
    meta = step_loss is not None
    layout = problem.layout
    params, grad, state, loss = carry.params, carry.grad, carry.state, carry.loss
    problem_state = carry.problem_state
    if meta:
        params = params.requires_grad_(True) if not params.requires_grad else params
    meta_loss = params.new_zeros(())
    # written in place: thousands of tiny loss tensors allocated between each step's large
    # temporaries fragment the CPU heap (glibc); a 10,000-step LSTM+GAC evaluation grew to 22 GB
    losses = loss.new_empty((num_steps, *loss.shape))
    for k in range(num_steps):
        step = carry.step + k
        if meta:
            update, state = net.update(grad.reshape(-1), state, layout, loss, step)
            params = params + update.view_as(params)
        else:
            with torch.no_grad():
                update, state = net.update(grad.reshape(-1), state, layout, loss, step)
                params = params + update.view_as(params)
            params.requires_grad_(True)
        loss, problem_state = problem.evaluate(params, step + 1, problem_state)
        (grad,) = torch.autograd.grad(loss.sum(), params, retain_graph=meta, create_graph=meta and second_derivatives)
        if meta:
            meta_loss = meta_loss + step_loss(problem.reported_loss(loss), step + 1)
        if not (meta and second_derivatives):
            grad = grad.detach()
        loss = loss.detach()  # the loss the next update sees is an input, like ∇
        losses[k] = problem.reported_loss(loss)
    new_carry = Carry(params.detach(), grad.detach(), loss, detach_state(state), carry.step + num_steps,
                      detach_state(problem_state))
    return meta_loss, losses, new_carry


def rollout(net: OptimizerNet, problem: Problem, num_steps: int) -> tuple[Tensor, Tensor, OptimizeeState]:
    """Losses f(θ_0..θ_T), shape (T + 1, B), θ_T and the optimizee's final state (e.g. batch-norm
    running statistics) of the learned optimizer, without meta-graph."""
    carry = start(net, problem)
    _, losses, end = unroll(net, problem, carry, num_steps)
    return torch.cat([problem.reported_loss(carry.loss).unsqueeze(0), losses]), end.params, end.problem_state
