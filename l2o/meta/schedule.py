"""The meta-training schedule: how long, how truncated, what objective, how fast, how validated."""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch

from l2o import checks
from l2o.meta.bptt import TruncatedBPTT
from l2o.meta.objectives import WeightedSum
from l2o.meta.truncation import Constant


@dataclass
class Schedule:
    """One epoch = `problems_per_epoch` fresh problems run for the epoch's horizon (the
    `truncation` schedule; `horizon` is its base T), cut into unrolls of `unroll` steps, one
    meta-update after each unroll. `objective` turns losses into the meta-loss;
    `meta_optimizer` (a partial taking params and lr, Adam by default) and `lr_scheduler` (a
    partial taking the optimizer, stepped once per epoch; ExponentialLR(meta_lr_decay) by
    default) train φ. `imitation` and `scaling` (None = off) are the stabilising techniques of
    Chen et al. 2020 and Lv et al. 2017, see their modules; `estimator` replaces the gradient
    estimator (`gradient_estimator`)."""

    epochs: int = 100
    horizon: int = 100
    unroll: int = 20
    problems_per_epoch: int = 1
    meta_lr: float = 1e-3
    meta_lr_decay: float = 1.0  # multiplied into the meta-lr every epoch (1 = constant)
    second_derivatives: bool = False
    clip_grad_norm: float | None = 10.0
    val_every: int = 10
    num_val: int = 20
    val_window: int = 1  # validation scores the mean loss over the last `val_window` steps up to each T
    patience: int | None = None  # validation checks without improvement before stopping
    truncation: Any = None  # l2o.meta.truncation object; None = Constant(horizon)
    objective: Any = None  # l2o.meta.objectives object; None = WeightedSum("uniform")
    meta_optimizer: Callable[..., torch.optim.Optimizer] | None = None
    lr_scheduler: Callable[..., Any] | None = None
    imitation: Any = None  # l2o.meta.imitation.Imitation: some epochs follow a teacher's trajectory (Chen et al. 2020)
    scaling: Any = None  # l2o.optimizees.scaling.RandomScaling: training problems randomly rescaled (Lv et al. 2017)
    estimator: Any = None  # a meta-gradient estimator (l2o.meta.bptt); None = truncated BPTT, mixed with `imitation`

    def __post_init__(self) -> None:
        for key in ("epochs", "horizon", "unroll", "problems_per_epoch", "val_every", "num_val", "val_window"):
            checks.integer(getattr(self, key), f"schedule.{key}")
        checks.number(self.meta_lr, "schedule.meta_lr", above=0, note=" (paper: 1e-3 .. 1e-2)")
        checks.number(self.meta_lr_decay, "schedule.meta_lr_decay", above=0, at_most=1)
        checks.number(self.clip_grad_norm, "schedule.clip_grad_norm", above=0, allow_none=True, note=" (null: no clipping)")
        checks.integer(self.patience, "schedule.patience", allow_none=True, note=" (null: no early stopping)")
        self.truncation = self.truncation if self.truncation is not None else Constant(self.horizon)
        self.objective = self.objective if self.objective is not None else WeightedSum()
        self.truncation.check(self.epochs, self.unroll)
        self.objective.check(self.max_horizon)

    def horizon_at(self, epoch: int, gen: torch.Generator | None = None) -> int:
        """The training horizon T of `epoch` (0-based), where the truncation schedule stands now."""
        return self.truncation.horizon_at(epoch, gen)

    @property
    def val_horizons(self) -> list[int]:
        """The horizons validation scores φ at now."""
        return self.truncation.val_horizons

    @property
    def num_stages(self) -> int:
        return self.truncation.num_stages

    @property
    def max_horizon(self) -> int:
        """The longest horizon any epoch or validation runs."""
        return self.truncation.max_horizon

    def gradient_estimator(self) -> Any:
        """The meta-gradient estimator of an epoch: `estimator` if set, else truncated BPTT (with
        imitation of a teacher in some epochs when `imitation` is set)."""
        if self.estimator is not None:
            return self.estimator
        bptt = TruncatedBPTT(self.objective, self.unroll, self.second_derivatives)
        return self.imitation.mixed_with(bptt) if self.imitation is not None else bptt

    def make_meta_optimizer(self, params: Any) -> tuple[torch.optim.Optimizer, Any]:
        """The meta-optimizer over φ and its lr schedule."""
        make = self.meta_optimizer or torch.optim.Adam
        opt = make(params, lr=self.meta_lr)
        if self.lr_scheduler is not None:
            return opt, self.lr_scheduler(opt)
        return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.meta_lr_decay)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (checkpoints, resume checks): objects as their `_target_` configs."""
        return {f.name: _as_config(getattr(self, f.name)) for f in fields(self)}


def _as_config(value: Any) -> Any:
    if isinstance(value, functools.partial):
        return {"_target_": f"{value.func.__module__}.{value.func.__qualname__}", "_partial_": True,
                **{k: _as_config(v) for k, v in value.keywords.items()}}
    if hasattr(value, "config") and callable(value.config):
        return value.config()
    if isinstance(value, (list, tuple)):
        return [_as_config(v) for v in value]
    return value
