"""A toy learned optimizer, a toy optimizee and a toy task that live only in the tests: l2o must
train, evaluate and deploy them from YAML in a --config-dir, with no change to l2o itself."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from l2o.layout import Layout
from l2o.optimizees.base import Family, ParamSpec, Problem, generator_for
from l2o.optimizers.base import OptimizerNet, State
from l2o.tasks import Task


class ToyMomentum(OptimizerNet):
    """Heavy-ball momentum whose step size and momentum are φ: m ← β m + g, θ ← θ − α m."""

    NAME = "toy_momentum"

    def __init__(self, init_lr: float = 0.01):
        super().__init__()
        self.init_lr = init_lr
        self.log_lr = nn.Parameter(torch.tensor(math.log(init_lr)))
        self.logit_beta = nn.Parameter(torch.tensor(0.0))

    def config(self) -> dict:
        return {"init_lr": self.init_lr}

    def init_state(self, layout: Layout, device=None, dtype=None) -> State:
        return {"m": torch.zeros(1, layout.size, device=device, dtype=dtype)}

    def update(self, grad: Tensor, state: State, layout: Layout, loss=None, step: int = 0):
        m = torch.sigmoid(self.logit_beta) * state["m"] + grad.reshape(1, -1)
        return (-self.log_lr.exp() * m).reshape(grad.shape), {"m": m}


class _SphereProblem(Problem):
    def __init__(self, center: Tensor, scale: Tensor, spec: ParamSpec):
        self.center, self.scale, self.spec, self.num_problems = center, scale, spec, center.shape[0]

    def init_params(self) -> Tensor:
        return torch.zeros_like(self.center)

    def loss(self, params: Tensor, step: int) -> Tensor:
        return ((params - self.center) ** 2 * self.scale).sum(-1)


class ToySphere(Family):
    """Σ s_i (x_i − c_i)² with a seeded center c and curvatures s per instance."""

    def __init__(self, dim: int = 5):
        self.spec = ParamSpec({"x": (dim,)})
        self.dim = dim

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> _SphereProblem:
        gens = [generator_for(s) for s in seeds]
        center = torch.stack([torch.randn(self.dim, generator=g) for g in gens])
        scale = torch.stack([torch.rand(self.dim, generator=g) + 0.5 for g in gens])
        return _SphereProblem(center.to(device), scale.to(device), self.spec)


class ToyRegression(Task):
    """A user's own task: a 2-layer MLP regressing a fixed random linear map of its inputs. Its loss
    turns NaN from step `nan_from_step` on (-1: never), as a user's loss with a bug would."""

    description = "a user's regression task"

    def __init__(self, dim: int = 8, nan_from_step: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.nan_from_step, self._step = dim, nan_from_step, 0
        self.target_map = torch.randn(dim, 1, generator=torch.Generator().manual_seed(0))

    def model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(self.dim, 16), nn.Tanh(), nn.Linear(16, 1))

    def batch(self, step: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        self._step = step
        x = torch.randn(self.batch_size, self.dim, generator=gen)
        return x, x @ self.target_map

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        loss = (output - target).pow(2).mean()
        return loss * torch.nan if 0 <= self.nan_from_step <= self._step else loss

    def test_metrics(self, model: nn.Module) -> dict[str, float]:
        x = torch.randn(256, self.dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            return {"test_loss": float((model(x) - x @ self.target_map).pow(2).mean())}
