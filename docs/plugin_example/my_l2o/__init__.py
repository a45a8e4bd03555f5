"""A user's own optimizee and learned-optimizer architecture for l2o, in their own package.

    PYTHONPATH=docs/plugin_example l2o-train --config-dir docs/plugin_example/conf \
        optimizee=rosenbrock optimizer=mlp_momentum
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from l2o.layout import Layout
from l2o.optimizees.base import Family, ParamSpec, Problem, generator_for
from l2o.optimizers.base import OptimizerNet, State


class RosenbrockProblem(Problem):
    def __init__(self, start: Tensor, a: Tensor, spec: ParamSpec):
        self.start, self.a, self.spec, self.num_problems = start, a, spec, start.shape[0]

    def init_params(self) -> Tensor:
        return self.start.clone()

    def loss(self, params: Tensor, step: int) -> Tensor:
        x, y = params[:, 0], params[:, 1]
        return (self.a - x) ** 2 + 100 * (y - x**2) ** 2  # one loss per instance: (B,)


class Rosenbrock(Family):
    """The Rosenbrock valley with its minimum at (a, a²), a ~ U(0.5, 1.5), start ~ N(0, 1)."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.spec = ParamSpec({"xy": (2,)})  # one tensor of kind "other"

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> RosenbrockProblem:
        gens = [generator_for(s) for s in seeds]
        start = torch.stack([torch.randn(2, generator=g) * self.scale for g in gens])
        a = torch.stack([torch.rand((), generator=g) + 0.5 for g in gens])
        return RosenbrockProblem(start.to(device), a.to(device), self.spec)


class MLPMomentum(OptimizerNet):
    """A coordinatewise MLP on (gradient, momentum), squashed by softsign; every step is
    bounded: update = output_scale · tanh(MLP(...)), and starts at 0 (zero output layer)."""

    NAME = "mlp_momentum"  # its name in l2o-eval's tables
    coordinatewise = True  # each coordinate's update reads only its own gradients: LearnedOptimizer may run it in chunks

    def __init__(self, hidden: int = 8, beta: float = 0.9, output_scale: float = 0.1):
        super().__init__()
        self.hidden, self.beta, self.output_scale = hidden, beta, output_scale
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)

    def config(self) -> dict:
        return {"hidden": self.hidden, "beta": self.beta, "output_scale": self.output_scale}

    def init_state(self, layout: Layout, device=None, dtype=None) -> State:
        return {"m": torch.zeros(1, layout.size, device=device, dtype=dtype)}

    def update(self, grad: Tensor, state: State, layout: Layout, loss=None, step: int = 0) -> tuple[Tensor, State]:
        m = self.beta * state["m"] + grad.reshape(1, -1)
        features = nn.functional.softsign(torch.cat([grad.reshape(1, -1), m])).T  # (N, 2): a row per coordinate
        return torch.tanh(self.mlp(features)).reshape(grad.shape) * self.output_scale, {"m": m}
