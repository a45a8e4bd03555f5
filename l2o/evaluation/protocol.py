"""How an evaluation judges optimizers: one validated object built from the config's protocol keys
(`conf/protocol/`) and shared by `l2o-eval` and `evaluate`. It is also what an evaluation's
units record (`partial/meta.json`): a resumed evaluation, or one whose baselines are reused,
must have the same."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from l2o import checks
from l2o.errors import L2OError

METRICS = ("final", "sum", "tail")


@dataclass(frozen=True)
class Tuning:
    """Each baseline's lr: the value of `grid` with the best mean `metric` on `num_problems`
    validation problems run for `steps` steps; an empty grid: no tuning, the configured lrs."""

    grid: tuple[float, ...]
    metric: str = "final"
    num_problems: int = 100
    steps: int = 100


@dataclass(frozen=True)
class Protocol:
    """`steps` of every optimizer on `num_test` test problems, in units of `chunk_problems`
    (`workers` at once); baselines tuned by `tuning`; a problem
    counts as diverged from the step its loss is non-finite or above `divergence_factor` × its first."""

    steps: int
    num_test: int
    chunk_problems: int
    tuning: Tuning
    workers: int = 1
    divergence_factor: float = 10.0

    @classmethod
    def from_config(cls, cfg: Any, default_steps: int) -> "Protocol":
        """From the eval config's keys (steps null: `default_steps`, the training horizon)."""
        steps = checks.integer(cfg.steps, "steps", allow_none=True) or default_steps
        num_test = checks.integer(cfg.num_test, "num_test")
        chunk = checks.integer(cfg.chunk_problems, "chunk_problems", allow_none=True) or num_test
        t = cfg.tuning
        if t.metric not in METRICS:
            raise L2OError(f"tuning.metric={t.metric!r} is unknown; allowed: {', '.join(METRICS)}.")
        tuning = Tuning((), t.metric, t.num_problems, steps)   # off: every baseline at its configured lr
        if checks.flag(t.enabled, "tuning.enabled"):
            low = checks.number(t.low, "tuning.low", above=0)
            high = checks.number(t.high, "tuning.high", above=0)
            if not low < high:
                raise L2OError(f"tuning.low={t.low!r} and tuning.high={t.high!r} must satisfy 0 < low < high.")
            tuning = Tuning(_logspace(low, high, checks.integer(t.num, "tuning.num")), t.metric,
                            checks.integer(t.num_problems, "tuning.num_problems"),
                            checks.integer(t.steps, "tuning.steps", allow_none=True) or steps)
        return cls(steps, num_test, chunk, tuning, checks.integer(cfg.workers, "workers"),
                   checks.number(cfg.divergence_factor, "divergence_factor", above=1))

    def record(self) -> dict[str, Any]:
        """The settings that define the results (what `partial/meta.json` keeps); not `workers`."""
        t = self.tuning
        return {"steps": self.steps, "num_test": self.num_test, "chunk_problems": self.chunk_problems,
                "lr_grid": list(t.grid), "tune_metric": t.metric, "num_tune": t.num_problems, "tune_steps": t.steps,
                "divergence_factor": self.divergence_factor}

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


def _logspace(low: float, high: float, num: int) -> tuple[float, ...]:
    """torch.logspace's values (what tuning grids have always been), as Python floats."""
    import torch

    return tuple(torch.logspace(math.log10(low), math.log10(high), num).tolist())
