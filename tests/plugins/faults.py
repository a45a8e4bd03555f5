"""Fault injection for the reliability tests, kept out of the package:

- `Faulty`, an optimizee that fails on purpose (NaN losses on chosen training batches), given to
  the CLIs as `optimizee=faulty` with `--config-dir tests/plugins/conf` and `tests` on PYTHONPATH;
- `python -m plugins.faults kill-after N l2o-eval ARGS...`: runs the real l2o-eval and SIGKILLs it
  once N of its units (baseline tunings and test units) are saved, as a lost machine would.
"""
from __future__ import annotations

import os
import signal
import sys
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


def kill_after(n: int) -> None:
    """SIGKILL this process once `n` units of l2o-eval are saved (counted where it saves them)."""
    from l2o.evaluation.evaluate import Partial

    saved = {"count": 0}

    def counting(method):
        def inner(*args, **kwargs):
            out = method(*args, **kwargs)
            saved["count"] += 1
            if saved["count"] >= n:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return inner

    Partial.save_tuning = counting(Partial.save_tuning)
    Partial.unit_done = counting(Partial.unit_done)


if __name__ == "__main__":
    _, command, n, cli, *rest = sys.argv
    assert command == "kill-after" and cli == "l2o-eval", sys.argv
    kill_after(int(n))
    sys.argv = [cli, *rest]
    from l2o.cli.eval import main

    main()
