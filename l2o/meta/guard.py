"""The NaN/Inf guard: a non-finite meta-loss or meta-gradient never reaches φ."""
from __future__ import annotations

from dataclasses import dataclass

from l2o.errors import L2OError

STEP, SKIP, ROLLBACK = "step", "skip", "rollback"


class TrainingDiverged(L2OError):
    """Non-finite meta-gradients persisted through every allowed rollback."""

    exit_code = 3


@dataclass
class NanGuard:
    """A non-finite meta-step is skipped; after `max_consecutive` in a row the run rolls back
    to the last good checkpoint with the meta-lr × `lr_factor`; after `max_rollbacks`
    rollbacks it stops (TrainingDiverged)."""

    max_consecutive: int = 5
    lr_factor: float = 0.5
    max_rollbacks: int = 3

    def judge(self, finite: bool, progress: "object") -> str:
        """What to do with this meta-step: STEP, SKIP or ROLLBACK; updates the counters of
        `progress` (skipped, consecutive_bad) and raises when no rollback is left."""
        if finite:
            progress.consecutive_bad = 0
            return STEP
        progress.skipped += 1
        progress.consecutive_bad += 1
        if progress.consecutive_bad < self.max_consecutive:
            return SKIP
        if progress.rollbacks >= self.max_rollbacks:
            raise TrainingDiverged(
                f"meta-training diverged: {progress.consecutive_bad} non-finite meta-steps in a row at epoch "
                f"{progress.epoch} after {progress.rollbacks} rollbacks (guard.max_rollbacks={self.max_rollbacks})."
            )
        return ROLLBACK
