"""An optimizee that fails on purpose, for the reliability tests and for trying the NaN guard."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from l2o.optimizees.base import SPLIT_OFFSETS, Family, Problem


class _NanProblem(Problem):
    def __init__(self, inner: Problem, from_step: int):
        self.inner, self.from_step = inner, from_step
        self.spec, self.num_problems = inner.spec, inner.num_problems

    def init_params(self) -> Tensor:
        return self.inner.init_params()

    def loss(self, params: Tensor, step: int) -> Tensor:
        loss = self.inner.loss(params, step)
        return loss * torch.nan if step >= self.from_step else loss


class Faulty(Family):
    """`base`, except that the training samples numbered in `nan_samples` (0 = the first
    training batch this process draws) return NaN losses from step `nan_from_step` on."""

    def __init__(self, base: Family, nan_samples: Sequence[int] = (), nan_from_step: int = 0):
        self.base, self.nan_samples, self.nan_from_step = base, set(nan_samples), nan_from_step
        self.spec = base.spec
        self.train_samples = 0

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> Problem:
        problem = self.base.sample(seeds, device)
        if all(s < SPLIT_OFFSETS["val"] for s in seeds):
            index, self.train_samples = self.train_samples, self.train_samples + 1
            if index in self.nan_samples:
                return _NanProblem(problem, self.nan_from_step)
        return problem
