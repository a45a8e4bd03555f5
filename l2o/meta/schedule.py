"""The meta-training schedule: how long, how truncated, how fast, how validated."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch

from l2o.errors import L2OError

WEIGHT_KINDS = ("uniform", "increasing", "last")


@dataclass
class Schedule:
    """One epoch = `problems_per_epoch` fresh problems run for `horizon` steps, cut into
    unrolls of `unroll` steps, one meta-update (Adam on φ) after each unroll."""

    epochs: int = 100
    horizon: int = 100
    unroll: int = 20
    problems_per_epoch: int = 1
    meta_lr: float = 1e-3
    meta_lr_decay: float = 1.0  # multiplied into the meta-lr every epoch (1 = constant)
    weights: Any = "uniform"  # uniform | increasing | last | a list of `horizon` floats
    second_derivatives: bool = False
    clip_grad_norm: float | None = 10.0
    val_every: int = 10
    num_val: int = 20
    patience: int | None = None  # validation checks without improvement before stopping
    # Horizon curriculum (Chen et al. 2020): [[epoch, horizon], ...] switches the training
    # horizon to `horizon` from `epoch` on, so an optimizer trained on T = 100 keeps improving
    # past it. Validation then scores the mean final loss over every horizon of the curriculum,
    # one yardstick for the whole run, so best.pt is chosen for all the horizons it must serve.
    curriculum: list | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("epochs", "horizon", "unroll", "problems_per_epoch", "val_every", "num_val"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise L2OError(f"schedule.{key}={value!r} must be a positive integer.")
        if self.unroll > self.horizon:
            raise L2OError(
                f"schedule.unroll={self.unroll} is longer than schedule.horizon={self.horizon}; "
                "the unroll length U must satisfy 1 <= U <= T."
            )
        if not (isinstance(self.meta_lr, (int, float)) and self.meta_lr > 0):
            raise L2OError(f"schedule.meta_lr={self.meta_lr!r} must be a positive number (paper: 1e-3 .. 1e-2).")
        if not (0 < self.meta_lr_decay <= 1):
            raise L2OError(f"schedule.meta_lr_decay={self.meta_lr_decay!r} must be in (0, 1].")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise L2OError(f"schedule.clip_grad_norm={self.clip_grad_norm!r} must be > 0, or null to disable clipping.")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise L2OError(f"schedule.patience={self.patience!r} must be a positive integer, or null for no early stopping.")
        self._check_curriculum()
        self.step_weights(self.max_horizon)  # validates `weights`

    def _check_curriculum(self) -> None:
        stages = self.curriculum or []
        ok = isinstance(stages, Sequence) and not isinstance(stages, str)
        # plain lists (not OmegaConf's ListConfig) so the schedule stores in a weights_only checkpoint
        stages = [list(s) if isinstance(s, Sequence) and not isinstance(s, str) else s for s in stages] if ok else []
        last_epoch = 0
        for stage in stages:
            ok = ok and isinstance(stage, list) and len(stage) == 2
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in stage)
            ok = ok and last_epoch < stage[0] < self.epochs and stage[1] >= self.unroll
            if not ok:
                break
            last_epoch = stage[0]
        if not ok:
            raise L2OError(
                f"schedule.curriculum={self.curriculum!r} must be a list of [epoch, horizon] pairs with "
                f"epochs increasing within 1..epochs-1={self.epochs - 1} and horizons >= unroll={self.unroll}, "
                "e.g. [[800, 200]]."
            )
        if self.curriculum is not None:
            self.curriculum = stages

    def horizon_at(self, epoch: int) -> int:
        """The training horizon T of `epoch` (0-based)."""
        horizon = self.horizon
        for start, stage_horizon in self.curriculum or []:
            if epoch >= start:
                horizon = stage_horizon
        return horizon

    @property
    def val_horizons(self) -> list[int]:
        """The horizons validation scores φ at: every horizon the run trains on."""
        return sorted({self.horizon, *(h for _, h in self.curriculum or [])})

    @property
    def max_horizon(self) -> int:
        return self.val_horizons[-1]

    def step_weights(self, T: int | None = None) -> torch.Tensor:
        """w_t for t = 1..T (the paper uses w_t = 1); a list is given for the longest horizon."""
        T = T or self.horizon
        if isinstance(self.weights, str):
            if self.weights == "uniform":
                return torch.ones(T)
            if self.weights == "increasing":
                return torch.arange(1, T + 1, dtype=torch.float32) / T
            if self.weights == "last":
                return torch.nn.functional.one_hot(torch.tensor(T - 1), T).float()
            raise L2OError(
                f"schedule.weights={self.weights!r} is unknown; allowed: {', '.join(WEIGHT_KINDS)} or a list of {T} numbers."
            )
        if isinstance(self.weights, Sequence) and len(self.weights) == self.max_horizon:
            return torch.tensor([float(w) for w in self.weights[:T]])
        raise L2OError(
            f"schedule.weights must be one of {', '.join(WEIGHT_KINDS)} or a list of {self.max_horizon} numbers "
            "(the longest horizon)."
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
