"""Random quadratics f(θ) = ||Wθ - y||², the paper's first experiment."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from l2o import checks
from l2o.errors import L2OError
from l2o.optimizees.base import Family, ParamSpec, Problem, generator_for

DISTRIBUTIONS = ("gaussian", "uniform")


class QuadraticProblem(Problem):
    def __init__(self, W: Tensor, y: Tensor, theta0: Tensor, spec: ParamSpec):
        self.W, self.y, self.theta0, self.spec = W, y, theta0, spec
        self.num_problems = W.shape[0]

    def init_params(self) -> Tensor:
        return self.theta0.clone()

    def loss(self, params: Tensor, step: int) -> Tensor:
        residual = torch.bmm(self.W, params.unsqueeze(-1)).squeeze(-1) - self.y
        return residual.pow(2).sum(-1)


class Quadratic(Family):
    """W (d×d) and y (d) IID Gaussian (paper) or uniform on [0, 1) (authors' code);
    θ0 ~ N(0, init_std²) as in the authors' code."""

    def __init__(self, dim: int = 10, distribution: str = "gaussian", init_std: float = 0.01):
        if distribution not in DISTRIBUTIONS:
            raise L2OError(f"optimizee.distribution={distribution!r} is unknown; allowed: {', '.join(DISTRIBUTIONS)}.")
        checks.integer(dim, "optimizee.dim")
        checks.number(init_std, "optimizee.init_std", at_least=0)
        self.dim, self.distribution, self.init_std = int(dim), distribution, float(init_std)
        self.spec = ParamSpec({"theta": (self.dim,)})

    def _draw(self, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
        if self.distribution == "gaussian":
            return torch.randn(shape, generator=gen)
        return torch.rand(shape, generator=gen)

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> QuadraticProblem:
        Ws, ys, thetas = [], [], []
        for seed in seeds:
            gen = generator_for(seed)
            Ws.append(self._draw((self.dim, self.dim), gen))
            ys.append(self._draw((self.dim,), gen))
            thetas.append(torch.randn(self.dim, generator=gen) * self.init_std)
        return QuadraticProblem(
            torch.stack(Ws).to(device), torch.stack(ys).to(device), torch.stack(thetas).to(device), self.spec
        )


class SimpleProblem(Problem):
    def __init__(self, theta0: Tensor, spec: ParamSpec):
        self.theta0, self.spec, self.num_problems = theta0, spec, theta0.shape[0]

    def init_params(self) -> Tensor:
        return self.theta0.clone()

    def loss(self, params: Tensor, step: int) -> Tensor:
        return params.pow(2).sum(-1)


class Simple(Family):
    """f(x) = x² in one dimension, x0 = 1: the authors' code's CI problem."""

    def __init__(self, x0: float = 1.0):
        self.x0 = float(x0)
        self.spec = ParamSpec({"x": (1,)})

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> SimpleProblem:
        return SimpleProblem(torch.full((len(seeds), 1), self.x0, device=device), self.spec)
