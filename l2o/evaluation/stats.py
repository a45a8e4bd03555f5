"""Per-step statistics over test problems, with divergence made explicit."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

Z95 = 1.959963984540054  # normal quantile; with >= 100 problems the t quantile differs by < 2%


def diverged_mask(losses: Tensor, factor: float) -> Tensor:
    """(T+1, B) bool: True from the first step at which a problem's loss is non-finite or
    above `factor` times its initial loss, onwards."""
    bad = ~torch.isfinite(losses) | (losses > factor * losses[0].abs().clamp_min(1e-12))
    return torch.cummax(bad.to(torch.int8), dim=0).values.bool()


@dataclass
class Curve:
    """Mean loss per step over the problems that have not diverged, with a 95% CI."""

    mean: Tensor
    lo: Tensor
    hi: Tensor
    n: Tensor  # problems still counted at each step
    diverged: float  # fraction of problems diverged by the last step
    sum_loss: float  # mean over non-diverged problems of Σ_t f(θ_t), t = 1..T
    final: Tensor  # final losses of the non-diverged problems

    @classmethod
    def from_losses(cls, losses: Tensor, divergence_factor: float) -> "Curve":
        losses = losses.double().cpu()
        mask = diverged_mask(losses, divergence_factor)
        ok = ~mask
        n = ok.sum(1)
        vals = torch.where(ok, losses, torch.zeros_like(losses))
        mean = vals.sum(1) / n.clamp_min(1)
        var = (torch.where(ok, losses - mean[:, None], torch.zeros_like(losses)) ** 2).sum(1) / (n - 1).clamp_min(1)
        half = Z95 * var.sqrt() / n.clamp_min(1).sqrt()
        nan = torch.full_like(mean, math.nan)
        mean, half = torch.where(n > 0, mean, nan), torch.where(n > 1, half, nan)
        alive = ok[-1]
        sum_loss = float(losses[1:, alive].sum(0).mean()) if alive.any() else math.nan
        return cls(mean, mean - half, mean + half, n, float(mask[-1].float().mean()), sum_loss, losses[-1, alive])

    @property
    def final_log_loss(self) -> float:
        """Mean over the non-diverged problems of ln(final loss): the "log training loss" that
        long-horizon plots report (e.g. Chen et al. 2020). It weighs every problem's order of
        magnitude equally, where the mean loss is dominated by the worst problems. NaN when a
        final loss is not positive or no problem is left."""
        if self.final.numel() == 0 or bool((self.final <= 0).any()):
            return math.nan
        return float(self.final.log().mean())


def score(losses: Tensor, metric: str, divergence_factor: float) -> float:
    """Selection score of a run (lower is better): +inf if any problem diverged. `final`: the last
    loss; `sum`: the sum of losses over the run; `tail`: the mean over its last tenth (a minibatch
    loss is noisy, so one step's says less about where a run ended)."""
    if bool(diverged_mask(losses, divergence_factor)[-1].any()):
        return math.inf
    if metric == "final":
        per_problem = losses[-1]
    elif metric == "tail":
        per_problem = losses[-max(1, (len(losses) - 1) // 10):].mean(0)
    else:
        per_problem = losses[1:].sum(0)
    return float(per_problem.double().mean())
