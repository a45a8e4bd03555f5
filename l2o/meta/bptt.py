"""Meta-gradient estimators, and the paper's one: truncated backpropagation through time.

An estimator turns one epoch's optimization run into meta-losses. Its `truncations(net,
problem, horizon, gen, stage)` runs `problem` for `horizon` steps and yields a `MetaLoss` after
every truncation: the scalar whose gradient with respect to φ is the estimate (the trainer
back-propagates it, then steps φ), the carry at the end of the truncation (θ, the optimizer's
state, ..., detached) and the TensorBoard tag of the value. Randomness comes from `gen`, the
trainer's checkpointed generator; `stage` is the truncation schedule's curriculum stage. The
trainer knows nothing else about how an estimate is made, so another estimator (ES, PES: a
surrogate loss whose gradient is the estimate) is one more file, given as `schedule.estimator`.
Imitation-mixed BPTT is in `l2o.meta.imitation`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol

import torch
from torch import Tensor

from l2o.meta.unroll import Carry, start, unroll
from l2o.optimizees.base import Problem
from l2o.optimizers.base import OptimizerNet


@dataclass
class MetaLoss:
    value: Tensor      # a scalar with its graph to φ
    carry: Carry       # where the optimization run stands after this truncation
    tag: str = "meta/loss"


class Estimator(Protocol):
    def truncations(self, net: OptimizerNet, problem: Problem, horizon: int, gen: torch.Generator,
                    stage: int) -> Iterator[MetaLoss]: ...


class TruncatedBPTT:
    """The paper's estimator: the run is cut into unrolls of `unroll` steps; each unroll's
    meta-loss (`objective`'s weighted losses) is back-propagated through that unroll only, and θ and
    the optimizer's state go on, detached, into the next. ∇f is an input (no second derivatives)
    unless `second_derivatives`."""

    def __init__(self, objective: Any, unroll: int, second_derivatives: bool = False):
        self.objective, self.unroll, self.second_derivatives = objective, unroll, second_derivatives

    def truncations(self, net: OptimizerNet, problem: Problem, horizon: int, gen: torch.Generator,
                    stage: int) -> Iterator[MetaLoss]:
        carry = start(net, problem)
        step_loss = self.objective.step_loss(horizon, carry.params.device)
        while carry.step < horizon:
            value, _, carry = unroll(net, problem, carry, min(self.unroll, horizon - carry.step), step_loss,
                                     self.second_derivatives)
            yield MetaLoss(value, carry)
