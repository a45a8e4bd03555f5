"""Truncation schedules: how long the optimization run of each meta-training epoch is.

Small objects in the shape of learned_optimization's truncation schedules: `horizon_at(epoch,
gen)` gives the epoch's horizon T (any randomness drawn from `gen`, the trainer's checkpointed
generator, so a resumed run draws the same lengths), `val_horizons` the horizons validation
scores φ at. Chosen in config (`truncation=constant|curriculum|log_uniform`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from l2o.errors import L2OError


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise L2OError(f"{key}={value!r} must be a positive integer.")
    return value


class Constant:
    """The same horizon T every epoch (the paper)."""

    def __init__(self, horizon: int = 100):
        self.horizon = _positive_int(horizon, "schedule.truncation.horizon")

    def check(self, epochs: int, unroll: int) -> None:
        if unroll > self.horizon:
            raise L2OError(f"schedule.unroll={unroll} is longer than schedule.horizon={self.horizon}; "
                           "the unroll length U must satisfy 1 <= U <= T.")

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None) -> int:
        return self.horizon

    @property
    def val_horizons(self) -> list[int]:
        return [self.horizon]

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.Constant", "horizon": self.horizon}


class Curriculum(Constant):
    """A horizon curriculum (Chen et al. 2020): T = `horizon` until the first stage, then each
    [epoch, horizon] stage switches T from that epoch on, so an optimizer trained on T = 100
    keeps improving past it. Validation scores the mean final loss over every horizon of the
    curriculum, one yardstick for the whole run, so best.pt serves all of them."""

    def __init__(self, horizon: int = 100, stages: Sequence[Sequence[int]] = ()):
        super().__init__(horizon)
        ok = isinstance(stages, Sequence) and not isinstance(stages, str)
        self.raw = stages
        # plain lists (not OmegaConf's ListConfig) so the config stores in a weights_only checkpoint
        self.stages = [list(s) if isinstance(s, Sequence) and not isinstance(s, str) else s for s in stages] if ok else None

    def check(self, epochs: int, unroll: int) -> None:
        super().check(epochs, unroll)
        ok, last_epoch = self.stages is not None, 0
        for stage in self.stages or []:
            ok = ok and isinstance(stage, list) and len(stage) == 2
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in stage)
            ok = ok and last_epoch < stage[0] < epochs and stage[1] >= unroll
            if not ok:
                break
            last_epoch = stage[0]
        if not ok:
            raise L2OError(
                f"schedule.truncation.stages={self.raw!r} must be a list of [epoch, horizon] pairs with "
                f"epochs increasing within 1..epochs-1={epochs - 1} and horizons >= unroll={unroll}, e.g. [[800, 200]]."
            )

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None) -> int:
        horizon = self.horizon
        for start, stage_horizon in self.stages:
            if epoch >= start:
                horizon = stage_horizon
        return horizon

    @property
    def val_horizons(self) -> list[int]:
        return sorted({self.horizon, *(h for _, h in self.stages)})

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.Curriculum", "horizon": self.horizon, "stages": self.stages}


class LogUniform:
    """A random horizon each epoch, T = round(exp(U(log low, log high))): short runs are
    cheap and many, long ones teach the far end. Validation at `high`."""

    def __init__(self, low: int = 20, high: int = 100):
        self.low = _positive_int(low, "schedule.truncation.low")
        self.high = _positive_int(high, "schedule.truncation.high")
        if self.low > self.high:
            raise L2OError(f"schedule.truncation.low={low} must be <= schedule.truncation.high={high}.")

    def check(self, epochs: int, unroll: int) -> None:
        if unroll > self.high:
            raise L2OError(f"schedule.unroll={unroll} is longer than schedule.truncation.high={self.high}.")

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None) -> int:
        u = float(torch.rand((), generator=gen))
        return int(round(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))))

    @property
    def val_horizons(self) -> list[int]:
        return [self.high]

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.LogUniform", "low": self.low, "high": self.high}
