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

from typing import Any, Sequence

import torch
from torch import Tensor

from l2o import checks
from l2o.optimizees.base import Family, OptimizeeState, Problem, generator_for

# the factors' generators: seeded apart from the problem's own (which draw θ0, W, minibatches ... from the seed)
SCALING_SEED = 7_919_000_000


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


class ScaledFamily(Family):
    """`inner`'s problems, each seen through the factors `scaling` draws from its seed."""

    def __init__(self, inner: Family, scaling: "RandomScaling"):
        self.inner, self.scaling, self.spec = inner, scaling, inner.spec

    @property
    def description(self) -> str | None:
        return self.inner.description

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> ScaledProblem:
        return self.scaling.apply(self.inner.sample(seeds, device), seeds)


class RandomScaling:
    """A wrapper of the training family (`wrap`): each problem seen as a `ScaledProblem` with
    factors exp(U(−param_range, param_range)) per coordinate and exp(U(−loss_range, loss_range))
    per instance (0 = off), drawn from the instance's seed, so an instance is the same problem
    whenever it is drawn, in any batch, on any process, and a resumed run sees the same ones."""

    def __init__(self, param_range: float = 3.0, loss_range: float = 3.0):
        for key, value in (("param_range", param_range), ("loss_range", loss_range)):
            checks.number(value, f"schedule.scaling.{key}", at_least=0, note=" (factors exp(U(-r, r)))")
        self.param_range, self.loss_range = float(param_range), float(loss_range)

    def wrap(self, family: Family) -> ScaledFamily:
        return ScaledFamily(family, self)

    def apply(self, problem: Problem, seeds: Sequence[int]) -> ScaledProblem:
        """`problem` (one instance per seed) seen through each seed's factors."""
        d = problem.spec.numel
        gens = [generator_for(SCALING_SEED + int(seed)) for seed in seeds]
        c = torch.stack([torch.exp((2 * torch.rand(d, generator=g) - 1) * self.param_range) for g in gens])
        s = torch.stack([torch.exp((2 * torch.rand((), generator=g) - 1) * self.loss_range) for g in gens])
        probe = problem.init_params()
        return ScaledProblem(problem, c.to(probe.device, probe.dtype), s.to(probe.device, probe.dtype))

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.RandomScaling", "param_range": self.param_range, "loss_range": self.loss_range}
