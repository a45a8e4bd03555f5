"""Imitation of a hand-designed optimizer during meta-training (Chen et al. 2020, "Training
stronger baselines for learning to optimize").

In an imitation epoch the optimizee follows the *teacher's* trajectory (tuned Adam by default)
while the learned optimizer, fed the same gradients, proposes its own step at every point; the
meta-loss pulls its step toward the teacher's: weight · 0.5 · mean((u_learned − u_teacher)²).
Because θ comes from the teacher, the learned optimizer sees well-behaved states even late in a
long run, which is what keeps it from drifting off when the horizon grows.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from l2o import checks
from l2o.errors import L2OError
from l2o.meta.bptt import MetaLoss, TruncatedBPTT
from l2o.meta.schedule import _as_config
from l2o.meta.unroll import Carry, start
from l2o.optimizees.base import Problem, detach_state
from l2o.optimizers.base import OptimizerNet

TeacherFactory = Callable[..., torch.optim.Optimizer]


def step_matching_loss(update: Tensor, target: Tensor, normalize: bool = False) -> Tensor:
    """0.5 · mean((update − target)²); with `normalize`, divided by mean(target²) (a relative error
    that does not shrink with the size of the teacher's steps)."""
    loss = 0.5 * (update - target).pow(2).mean()
    return loss / target.pow(2).mean().clamp_min(1e-30) if normalize else loss


class Imitation:
    """With `probability` per epoch, meta-train on the teacher's trajectory with the step-matching
    loss (`weight` × it, `normalize` as in `step_matching_loss`). `teacher` is a torch.optim
    partial (lr included): Adam, RMSprop or NAG (SGD with Nesterov momentum), tuned beforehand.
    `probability` may be a list, one per adaptive-curriculum stage (the last one for later stages):
    Chen et al. imitate in 0%, 10%, then 30% of the epochs as the horizon grows."""

    def __init__(self, teacher: TeacherFactory | None = None, probability: float | Sequence[float] = 0.3,
                 weight: float = 1.0, normalize: bool = False):
        probs = list(probability) if isinstance(probability, Sequence) and not isinstance(probability, str) else [probability]
        if not probs or not all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in probs):
            raise L2OError(f"schedule.imitation.probability={probability!r} must be a number in [0, 1] "
                           "or a non-empty list of them (one per curriculum stage).")
        checks.number(weight, "schedule.imitation.weight", above=0)
        self.teacher_factory = teacher or functools.partial(torch.optim.Adam, lr=0.01)
        self.probabilities = [float(p) for p in probs]
        self.weight, self.normalize = float(weight), bool(normalize)

    def probability(self, stage: int = 0) -> float:
        return self.probabilities[min(stage, len(self.probabilities) - 1)]

    def draw(self, gen: torch.Generator, stage: int = 0) -> bool:
        """Whether this epoch imitates (drawn from the trainer's checkpointed generator, one draw
        per epoch whatever the probability, so resumed runs stay bit-identical)."""
        return float(torch.rand((), generator=gen)) < self.probability(stage)

    def teacher(self, params: Tensor) -> torch.optim.Optimizer:
        """A fresh teacher over a copy of θ0, the (B, D) parameters it will move."""
        return self.teacher_factory([params.detach().clone().requires_grad_(True)])

    def loss(self, update: Tensor, target: Tensor) -> Tensor:
        return self.weight * step_matching_loss(update, target, self.normalize)

    def mixed_with(self, bptt: TruncatedBPTT) -> "ImitationMixed":
        return ImitationMixed(self, bptt)

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.Imitation", "teacher": _as_config(self.teacher_factory),
                "probability": self.probabilities if len(self.probabilities) > 1 else self.probabilities[0],
                "weight": self.weight, "normalize": self.normalize}


def imitate(net: OptimizerNet, problem: Problem, carry: Carry, num_steps: int, teacher: torch.optim.Optimizer,
            loss_fn: Callable[[Tensor, Tensor], Tensor]) -> tuple[Tensor, Tensor, Carry]:
    """`num_steps` steps along the teacher's trajectory from `carry`. At each θ_t the learned
    optimizer's update (with its graph to φ) is compared with the teacher's by `loss_fn`; θ_{t+1}
    is the teacher's. Returns (meta-loss, reported losses (num_steps, B), carry), like `unroll`."""
    layout = problem.layout
    (theta,) = teacher.param_groups[0]["params"]
    grad, state, loss, problem_state = carry.grad, carry.state, carry.loss, carry.problem_state
    meta_loss, losses = theta.new_zeros(()), []
    for k in range(num_steps):
        step = carry.step + k
        update, state = net.update(grad.reshape(-1), state, layout, loss, step)
        with torch.no_grad():
            before = theta.clone()
            theta.grad = grad.view_as(theta)
            teacher.step()
            target = theta - before
        meta_loss = meta_loss + loss_fn(update.view_as(target), target)
        params = theta.detach().clone().requires_grad_(True)
        loss, problem_state = problem.evaluate(params, step + 1, problem_state)
        (grad,) = torch.autograd.grad(loss.sum(), params)
        loss = loss.detach()
        losses.append(problem.reported_loss(loss))
    new_carry = Carry(theta.detach().clone(), grad.detach(), loss, detach_state(state), carry.step + num_steps,
                      detach_state(problem_state))
    return meta_loss, torch.stack(losses), new_carry


class ImitationMixed:
    """A gradient estimator (l2o.meta.bptt): in the epochs `imitation` draws, the step-matching
    meta-loss along the teacher's trajectory, unroll by unroll; in the others `bptt`'s."""

    def __init__(self, imitation: Imitation, bptt: TruncatedBPTT):
        self.imitation, self.bptt = imitation, bptt

    def truncations(self, net: OptimizerNet, problem: Problem, horizon: int, gen: torch.Generator,
                    stage: int) -> Iterator[MetaLoss]:
        if not self.imitation.draw(gen, stage):
            yield from self.bptt.truncations(net, problem, horizon, gen, stage)
            return
        carry = start(net, problem)
        teacher = self.imitation.teacher(carry.params)
        while carry.step < horizon:
            value, _, carry = imitate(net, problem, carry, min(self.bptt.unroll, horizon - carry.step), teacher,
                                      self.imitation.loss)
            yield MetaLoss(value, carry, "meta/imitation_loss")
