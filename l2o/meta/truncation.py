"""Truncation schedules: how long the optimization run of each meta-training epoch is.

Small objects in the shape of learned_optimization's truncation schedules: `horizon_at(epoch,
gen, stage)` gives the epoch's horizon T (any randomness drawn from `gen`, the trainer's
checkpointed generator, so a resumed run draws the same lengths), `val_horizons_at(stage)` the
horizons validation scores φ at. Only `Adaptive` has more than one stage: the trainer moves it on
(its stage is part of the checkpointed progress record). Chosen in config
(`truncation=constant|curriculum|log_uniform|adaptive`).
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


class _OneStage:
    """Schedules without stages: the stage argument is ignored."""

    num_stages = 1

    def val_horizons_at(self, stage: int = 0) -> list[int]:
        return self.val_horizons

    @property
    def max_horizon(self) -> int:
        return max(self.val_horizons)


class Constant(_OneStage):
    """The same horizon T every epoch (the paper). `validate_at` lists the horizons validation scores
    (the mean final loss over them; default [T]), e.g. [100, 200] to pick φ for a 200-step evaluation."""

    def __init__(self, horizon: int = 100, validate_at: Sequence[int] | None = None):
        self.horizon = _positive_int(horizon, "schedule.truncation.horizon")
        ok = validate_at is None or (isinstance(validate_at, Sequence) and not isinstance(validate_at, str)
                                     and len(validate_at) > 0
                                     and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in validate_at))
        if not ok:
            raise L2OError(f"schedule.truncation.validate_at={validate_at!r} must be null or a non-empty list of "
                           "positive integer horizons, e.g. [100, 200].")
        self.validate_at = sorted(set(validate_at)) if validate_at is not None else None

    def check(self, epochs: int, unroll: int) -> None:
        if unroll > self.horizon:
            raise L2OError(f"schedule.unroll={unroll} is longer than schedule.horizon={self.horizon}; "
                           "the unroll length U must satisfy 1 <= U <= T.")

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None, stage: int = 0) -> int:
        return self.horizon

    @property
    def val_horizons(self) -> list[int]:
        return self.validate_at or [self.horizon]

    def config(self) -> dict[str, Any]:
        extra = {"validate_at": self.validate_at} if self.validate_at else {}
        return {"_target_": f"{__name__}.Constant", "horizon": self.horizon, **extra}


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

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None, stage: int = 0) -> int:
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


class LogUniform(_OneStage):
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

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None, stage: int = 0) -> int:
        u = float(torch.rand((), generator=gen))
        return int(round(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))))

    @property
    def val_horizons(self) -> list[int]:
        return [self.high]

    def config(self) -> dict[str, Any]:
        return {"_target_": f"{__name__}.LogUniform", "low": self.low, "high": self.high}


# what the adaptive curriculum tells the trainer after a validation check
STAY, ADVANCE, STOP = "stay", "advance", "stop"


class Adaptive:
    """An adaptive horizon curriculum (Chen et al. 2020): stage k trains with T = horizons[k] and
    validates at the next stage's horizon (the last stage at its own), so φ is chosen for the
    length it must reach next. When `patience` checks in a row bring no improvement, or the stage
    has run its `stage_epochs` (a budget per stage: null, one number, or one per stage), the
    trainer restores the stage's best φ and moves on; a stage whose checks never beat the φ it started
    from ends the run (longer horizons stopped helping), as does the end of the last stage.
    `min_checks` keeps every stage for at least that many checks whatever they show: Chen et al.'s
    rule is patience 1 after at least 3 checks (a slow start does not end a stage).
    Each stage's best φ is kept as `best_stage<k>.pt`; `best.pt` is the latest stage's best."""

    def __init__(self, horizons: Sequence[int] = (100, 200, 500, 1000), patience: int = 3,
                 stage_epochs: int | Sequence[int] | None = None, min_checks: int = 1):
        ok = isinstance(horizons, Sequence) and not isinstance(horizons, str) and len(horizons) > 0
        self.raw = horizons
        self.horizons = [h for h in horizons] if ok else None
        self.patience = _positive_int(patience, "schedule.truncation.patience")
        self.min_checks = _positive_int(min_checks, "schedule.truncation.min_checks")
        n = len(self.horizons) if ok else 1
        caps = stage_epochs if isinstance(stage_epochs, Sequence) and not isinstance(stage_epochs, str) else [stage_epochs] * n
        if len(caps) != n or any(c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1) for c in caps):
            raise L2OError(f"schedule.truncation.stage_epochs={stage_epochs!r} must be null, a positive integer, "
                           f"or one positive integer per stage ({n}).")
        self.stage_epochs = list(caps)

    @property
    def num_stages(self) -> int:
        return len(self.horizons)

    def check(self, epochs: int, unroll: int) -> None:
        hs = self.horizons
        ok = hs is not None and all(isinstance(h, int) and not isinstance(h, bool) for h in hs)
        if not (ok and hs[0] >= unroll and all(a < b for a, b in zip(hs, hs[1:]))):
            raise L2OError(f"schedule.truncation.horizons={self.raw!r} must be a list of increasing integer "
                           f"horizons, the first >= unroll={unroll}, e.g. [100, 200, 500, 1000].")

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None, stage: int = 0) -> int:
        return self.horizons[stage]

    def val_horizons_at(self, stage: int = 0) -> list[int]:
        return [self.horizons[min(stage + 1, self.num_stages - 1)]]

    @property
    def val_horizons(self) -> list[int]:
        return self.val_horizons_at(0)

    @property
    def max_horizon(self) -> int:
        return self.horizons[-1]

    def decide(self, stage: int, checks_since_best: int, stage_improved: bool, epochs_in_stage: int = 0,
               checks_in_stage: int | None = None) -> str:
        """After a validation check (the `checks_in_stage`-th of this stage): STAY in the stage, ADVANCE
        to the next, or STOP the run. A stage also ends when it has run its `stage_epochs` (a time
        budget per horizon), even before `min_checks`."""
        cap = self.stage_epochs[stage]
        too_early = checks_in_stage is not None and checks_in_stage < self.min_checks
        patient = checks_since_best < self.patience or too_early
        if patient and (cap is None or epochs_in_stage < cap):
            return STAY
        if stage + 1 >= self.num_stages or not stage_improved:
            return STOP
        return ADVANCE

    def config(self) -> dict[str, Any]:
        # min_checks only when set: runs saved before it existed still resume (their config matches)
        extra = {"min_checks": self.min_checks} if self.min_checks != 1 else {}
        return {"_target_": f"{__name__}.Adaptive", "horizons": self.horizons, "patience": self.patience,
                "stage_epochs": self.stage_epochs, **extra}
