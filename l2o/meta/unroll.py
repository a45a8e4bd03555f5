"""Truncated unrolls of a learned optimizer on a batch of problems.

The optimizee gradient ∇_t is taken with `torch.autograd.grad` on the current step's
graph only (PERF-NOTES: a `.backward()` inside the unroll walks the whole unroll every
step). Unless `second_derivatives` is set, ∇_t is a constant for the meta-gradient, as in
the paper; θ_t still depends on φ through the earlier updates.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from l2o.optimizees.base import Problem
from l2o.optimizers.lstm import State


@dataclass
class Carry:
    """What one unroll hands to the next, detached: θ_t, ∇f(θ_t), f(θ_t) and the LSTM state."""

    params: Tensor
    grad: Tensor
    loss: Tensor
    state: State
    step: int


def start(net: nn.Module, problem: Problem) -> Carry:
    """θ0 of every instance, its loss and gradient, and a zero LSTM state."""
    params = problem.init_params().requires_grad_(True)
    loss = problem.loss(params, 0)
    (grad,) = torch.autograd.grad(loss.sum(), params)
    state = net.init_state(params.numel(), device=params.device, dtype=params.dtype)
    return Carry(params.detach(), grad, loss.detach(), state, 0)


def unroll(
    net: nn.Module,
    problem: Problem,
    carry: Carry,
    num_steps: int,
    weights: Tensor | None = None,
    second_derivatives: bool = False,
) -> tuple[Tensor, Tensor, Carry]:
    """Run `num_steps` learned updates from `carry`.

    With `weights` (one per step) the returned meta-loss Σ_k w_k · mean_b f_b(θ_k) keeps
    its graph to φ; with `weights=None` nothing is recorded for a meta-gradient
    (evaluation) and the meta-loss is 0. Returns (meta-loss, losses (num_steps, B), carry).
    """
    meta = weights is not None
    params, grad, state = carry.params, carry.grad, carry.state
    if meta:
        params = params.requires_grad_(True) if not params.requires_grad else params
    meta_loss = params.new_zeros(())
    losses = []
    for k in range(num_steps):
        if meta:
            update, state = net(grad, state)
            params = params + update
        else:
            with torch.no_grad():
                update, state = net(grad, state)
                params = params + update
            params.requires_grad_(True)
        loss = problem.loss(params, carry.step + k + 1)
        (grad,) = torch.autograd.grad(loss.sum(), params, retain_graph=meta, create_graph=meta and second_derivatives)
        if meta:
            meta_loss = meta_loss + weights[k] * loss.mean()
        losses.append(loss.detach())
    stacked = torch.stack(losses)
    new_carry = Carry(params.detach(), grad.detach(), stacked[-1], tuple(s.detach() for s in state), carry.step + num_steps)
    return meta_loss, stacked, new_carry


def rollout(net: nn.Module, problem: Problem, num_steps: int) -> tuple[Tensor, Tensor]:
    """Losses f(θ_0..θ_T), shape (T + 1, B), and θ_T of the learned optimizer, without meta-graph."""
    carry = start(net, problem)
    _, losses, end = unroll(net, problem, carry, num_steps)
    return torch.cat([carry.loss.unsqueeze(0), losses]), end.params
