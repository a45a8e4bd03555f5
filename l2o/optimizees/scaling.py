"""Random scaling of training problems (Lv et al. 2017, "Learning gradient descent: better
generalization and longer horizons").

A problem f is replaced by f_c,s(θ') = s · f(c ⊙ θ') started from θ'_0 = θ_0 / c: the same
trajectory of models in the original coordinates θ = c ⊙ θ', but gradients scaled by s·c and the
loss by s. Factors c (per coordinate) and s (per instance) are exp(U(−r, r)). An optimizer that
must do well on every such version of a problem cannot lean on the raw scale of gradients or
losses, which is what lets it carry over to problems, and stages of training, of other scales.
The meta-objective and the logs still count the original loss f (`reported_loss`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from l2o.errors import L2OError
from l2o.optimizees.base import OptimizeeState, Problem


class ScaledProblem(Problem):
    """`inner` seen through parameter factors `param_scale` (B, D) and loss factors `loss_scale` (B,)."""

    def __init__(self, inner: Problem, param_scale: Tensor, loss_scale: Tensor):
        self.inner, self.param_scale, self.loss_scale = inner, param_scale, loss_scale
        self.spec, self.num_problems = inner.spec, inner.num_problems

    def init_params(self) -> Tensor:
        return self.inner.init_params() / self.param_scale

    def init_state(self) -> OptimizeeState:
        return self.inner.init_state()

    def evaluate(self, params: Tensor, step: int, state: OptimizeeState) -> tuple[Tensor, OptimizeeState]:
        loss, state = self.inner.evaluate(self.original_params(params), step, state)
        return loss * self.loss_scale, state

    def original_params(self, params: Tensor) -> Tensor:
        """θ = c ⊙ θ', the inner problem's parameters."""
        return params * self.param_scale

    def reported_loss(self, loss: Tensor) -> Tensor:
        return self.inner.reported_loss(loss / self.loss_scale)


class RandomScaling:
    """Wraps each training problem in a `ScaledProblem` with factors exp(U(−param_range,
    param_range)) per coordinate and exp(U(−loss_range, loss_range)) per instance (0 = off),
    drawn from the trainer's checkpointed generator so a resumed run draws the same ones."""

    def __init__(self, param_range: float = 3.0, loss_range: float = 3.0):
        for key, value in (("param_range", param_range), ("loss_range", loss_range)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
                raise L2OError(f"schedule.scaling.{key}={value!r} must be a number >= 0 (factors exp(U(-r, r))).")
        self.param_range, self.loss_range = float(param_range), float(loss_range)

    def wrap(self, problem: Problem, gen: torch.Generator) -> ScaledProblem:
        b, d = problem.num_problems, problem.spec.numel
        c = torch.exp((2 * torch.rand(b, d, generator=gen) - 1) * self.param_range)
        s = torch.exp((2 * torch.rand(b, generator=gen) - 1) * self.loss_range)
        probe = problem.init_params()
        return ScaledProblem(problem, c.to(probe.device, probe.dtype), s.to(probe.device, probe.dtype))

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.RandomScaling", "param_range": self.param_range, "loss_range": self.loss_range}
