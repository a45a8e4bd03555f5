"""Meta-objectives: what an unroll's losses add up to for the meta-gradient.

`step_loss(horizon)` returns the term of one step, `(losses (B,), t) -> scalar`, that the
unroll sums over its steps (t = 1..T counts from the start of the optimization run, so a
weighting can depend on where in the run a step falls). Chosen in config
(`objective=weighted_sum|mean_log`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from l2o import checks
from l2o.errors import L2OError

WEIGHT_KINDS = ("uniform", "increasing", "last")


class WeightedSum:
    """Σ_t w_t · mean_b f_b(θ_t), the paper's meta-loss (w_t = 1: `uniform`); `increasing`
    (w_t = t/T), `last` (only f(θ_T)), or an explicit list of one weight per step."""

    def __init__(self, weights: str | Sequence[float] = "uniform"):
        if isinstance(weights, str) and weights not in WEIGHT_KINDS:
            raise L2OError(f"schedule.objective.weights={weights!r} is unknown; allowed: {', '.join(WEIGHT_KINDS)} "
                           "or a list of one number per step.")
        self.weights = weights if isinstance(weights, str) else [float(w) for w in weights]

    def weights_for(self, horizon: int) -> Tensor:
        T = horizon
        if self.weights == "uniform":
            return torch.ones(T)
        if self.weights == "increasing":
            return torch.arange(1, T + 1, dtype=torch.float32) / T
        if self.weights == "last":
            return torch.nn.functional.one_hot(torch.tensor(T - 1), T).float()
        if len(self.weights) < T:
            raise L2OError(f"schedule.objective.weights has {len(self.weights)} numbers but the horizon is {T}; "
                           "give one weight per step of the longest horizon.")
        return torch.tensor(self.weights[:T])

    def check(self, max_horizon: int) -> None:
        self.weights_for(max_horizon)

    def step_loss(self, horizon: int, device: torch.device | str = "cpu") -> Callable[[Tensor, int], Tensor]:
        w = self.weights_for(horizon).to(device)
        return lambda losses, t: w[t - 1] * losses.mean()

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.WeightedSum", "weights": self.weights}


class MeanLogLoss:
    """(1/T) Σ_t mean_b log(f_b(θ_t) + eps): every order of magnitude of progress counts the
    same, so late, small losses still teach (losses must be >= 0)."""

    def __init__(self, eps: float = 1e-12):
        checks.number(eps, "schedule.objective.eps", above=0)
        self.eps = float(eps)

    def check(self, max_horizon: int) -> None:
        pass

    def step_loss(self, horizon: int, device: torch.device | str = "cpu") -> Callable[[Tensor, int], Tensor]:
        return lambda losses, t: (losses + self.eps).log().mean() / horizon

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.MeanLogLoss", "eps": self.eps}
