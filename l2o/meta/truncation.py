"""Truncation schedules: how long the optimization run of each meta-training epoch is.

Small objects in the shape of learned_optimization's truncation schedules, each owning its state:
`horizon_at(epoch, gen)` gives the epoch's horizon T (any randomness drawn from `gen`, the
trainer's checkpointed generator, so a resumed run draws the same lengths), `val_horizons` the
horizons validation scores φ at now, and `observe(epoch, improved)`, called after every
validation check, may move the schedule on (STAY, ADVANCE: the trainer restores the best φ and
rescores it at the new yardstick, STOP). `state_dict()` / `load_state_dict()` go into the
checkpoint, so the trainer keeps no field of any schedule. Chosen in config
(`truncation=constant|curriculum|log_uniform|adaptive`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from l2o import checks
from l2o.errors import L2OError




# what a schedule tells the trainer after a validation check
STAY, ADVANCE, STOP = "stay", "advance", "stop"


class TruncationSchedule:
    """The interface, with the defaults of a schedule without stages or state."""

    num_stages = 1
    stage = 0

    def check(self, epochs: int, unroll: int) -> None:
        """Refuse settings that cannot run (an unroll longer than every horizon, ...)."""

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None) -> int:
        raise NotImplementedError

    @property
    def val_horizons(self) -> list[int]:
        """The horizons validation scores φ at now (the mean final loss over them)."""
        raise NotImplementedError

    @property
    def max_horizon(self) -> int:
        """The longest horizon any epoch or validation runs."""
        return max(self.val_horizons)

    def observe(self, epoch: int, improved: bool) -> str:
        """After a validation check before `epoch` (whether it beat the best so far): STAY, ADVANCE or STOP."""
        return STAY

    def stop_reason(self) -> str:
        """Why `observe` said STOP, for the log."""
        return "the schedule ended"

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def config(self) -> dict[str, Any]:
        raise NotImplementedError



class Constant(TruncationSchedule):
    """The same horizon T every epoch (the paper). `validate_at` lists the horizons validation scores
    (the mean final loss over them; default [T]), e.g. [100, 200] to pick φ for a 200-step evaluation."""

    def __init__(self, horizon: int = 100, validate_at: Sequence[int] | None = None):
        self.horizon = checks.integer(horizon, "schedule.truncation.horizon")
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

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None) -> int:
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


class LogUniform(TruncationSchedule):
    """A random horizon each epoch, T = round(exp(U(log low, log high))): short runs are
    cheap and many, long ones teach the far end. Validation at `high`."""

    def __init__(self, low: int = 20, high: int = 100):
        self.low = checks.integer(low, "schedule.truncation.low")
        self.high = checks.integer(high, "schedule.truncation.high")
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


class Adaptive(TruncationSchedule):
    """An adaptive horizon curriculum (Chen et al. 2020): stage k trains with T = horizons[k] and
    validates at the next stage's horizon (the last stage at its own), so φ is chosen for the
    length it must reach next. When `patience` checks in a row bring no improvement, or the stage
    has run its `stage_epochs` (a budget per stage: null, one number, or one per stage), the
    trainer restores the stage's best φ and moves on; a stage whose checks never beat the φ it started
    from ends the run (longer horizons stopped helping), as does the end of the last stage.
    `min_checks` keeps every stage for at least that many checks whatever they show: Chen et al.'s
    rule is patience 1 after at least 3 checks (a slow start does not end a stage).
    Each stage's best φ is kept as `best_stage<k>.pt`; `best.pt` is the latest stage's best.
    State: the stage, its start epoch, its checks, the checks since its best, whether any improved."""

    def __init__(self, horizons: Sequence[int] = (100, 200, 500, 1000), patience: int = 3,
                 stage_epochs: int | Sequence[int] | None = None, min_checks: int = 1):
        ok = isinstance(horizons, Sequence) and not isinstance(horizons, str) and len(horizons) > 0
        self.raw = horizons
        self.horizons = [h for h in horizons] if ok else None
        self.patience = checks.integer(patience, "schedule.truncation.patience")
        self.min_checks = checks.integer(min_checks, "schedule.truncation.min_checks")
        n = len(self.horizons) if ok else 1
        caps = stage_epochs if isinstance(stage_epochs, Sequence) and not isinstance(stage_epochs, str) else [stage_epochs] * n
        if len(caps) != n or any(c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1) for c in caps):
            raise L2OError(f"schedule.truncation.stage_epochs={stage_epochs!r} must be null, a positive integer, "
                           f"or one positive integer per stage ({n}).")
        self.stage_epochs = list(caps)
        self.stage, self.stage_start, self.checks, self.checks_since_best, self.improved = 0, 0, 0, 0, False

    @property
    def num_stages(self) -> int:
        return len(self.horizons)

    def check(self, epochs: int, unroll: int) -> None:
        hs = self.horizons
        ok = hs is not None and all(isinstance(h, int) and not isinstance(h, bool) for h in hs)
        if not (ok and hs[0] >= unroll and all(a < b for a, b in zip(hs, hs[1:]))):
            raise L2OError(f"schedule.truncation.horizons={self.raw!r} must be a list of increasing integer "
                           f"horizons, the first >= unroll={unroll}, e.g. [100, 200, 500, 1000].")

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None) -> int:
        return self.horizons[self.stage]

    @property
    def val_horizons(self) -> list[int]:
        return [self.horizons[min(self.stage + 1, self.num_stages - 1)]]

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

    def observe(self, epoch: int, improved: bool) -> str:
        """Count the check; on ADVANCE the next stage starts at `epoch` with fresh counters."""
        self.checks += 1
        self.improved = self.improved or improved
        self.checks_since_best = 0 if improved else self.checks_since_best + 1
        decision = self.decide(self.stage, self.checks_since_best, self.improved, epoch - self.stage_start, self.checks)
        if decision == ADVANCE:
            self.stage, self.stage_start, self.checks, self.checks_since_best, self.improved = self.stage + 1, epoch, 0, 0, False
        return decision

    def stop_reason(self) -> str:
        return "its last stage stopped improving" if self.improved else f"stage {self.stage} never improved"

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_start": self.stage_start, "checks": self.checks,
                "checks_since_best": self.checks_since_best, "improved": self.improved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage, self.stage_start, self.checks = state["stage"], state["stage_start"], state["checks"]
        self.checks_since_best, self.improved = state["checks_since_best"], state["improved"]

    def config(self) -> dict[str, Any]:
        # min_checks only when set: runs saved before it existed still resume (their config matches)
        extra = {"min_checks": self.min_checks} if self.min_checks != 1 else {}
        return {"_target_": f"{__name__}.Adaptive", "horizons": self.horizons, "patience": self.patience,
                "stage_epochs": self.stage_epochs, **extra}
