"""What an optimizee is: a family of problems that samples batches of seeded instances.

Parameters of a batch of B instances live in one flat tensor of shape (B, D). The family's
`ParamSpec` names the slices of the D axis (e.g. `w1`, `b1`, ...), so a loss sees named
tensors while the learned optimizer sees one vector of coordinates: one LSTM call over
all coordinates of all parameters of all instances, with no Python loop over tensors.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from l2o.layout import Layout

# Seeds of the three splits never overlap: training problems are drawn from [0, 1e9),
# validation problems from [1e9, 2e9) and test problems from [2e9, ...).
SPLIT_OFFSETS = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}


def split_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """Seeds of problems `start .. start+count-1` of a split."""
    return [SPLIT_OFFSETS[split] + start + i for i in range(count)]


@dataclass(frozen=True)
class ParamSpec:
    """Names, shapes and kinds of one instance's parameters, laid out back to back in a flat
    vector. Kinds (l2o.layout.KINDS) default to "other"; name and kind a family's tensors as
    torch.nn would (e.g. `0.weight`, linear_weight) so routing rules written for a user's
    model match the optimizee it was trained on."""

    shapes: dict[str, tuple[int, ...]]
    kinds: dict[str, str] = field(default_factory=dict)

    def layout(self, num_instances: int = 1) -> Layout:
        return Layout.build(((n, s, self.kinds.get(n, "other")) for n, s in self.shapes.items()), num_instances)

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())

    @property
    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            out[name] = slice(start, start + n)
            start += n
        return out

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Views of a (B, D) tensor as named (B, *shape) tensors (no copy)."""
        batch = flat.shape[:-1]
        return {name: flat[..., sl].reshape(*batch, *self.shapes[name]) for name, sl in self.slices.items()}


OptimizeeState = Any  # None, or a tensor / dict / list of tensors (e.g. batch-norm running statistics)


class Problem(ABC):
    """B independent instances of one family, evaluated as one tensor program.

    A stateless problem implements `loss(params, step)`. A problem with state that evolves
    along the optimization (batch-norm running statistics) implements `init_state()` and
    `evaluate(params, step, state) -> (losses, new_state)`; the unroll carries that state and
    detaches it at every truncation, like θ.

    Optional capabilities are declared, with these defaults: `has_test_metrics` (a held-out set:
    `test_metrics(params, state)` gives each instance's test loss and accuracy, which l2o-eval
    reports beside the training loss)."""

    spec: ParamSpec
    num_problems: int
    has_test_metrics: bool = False

    @property
    def layout(self) -> Layout:
        """Instance, tensor and kind of every coordinate of the (B, D) parameters."""
        return self.spec.layout(self.num_problems)

    @abstractmethod
    def init_params(self) -> Tensor:
        """Initial parameters θ0, shape (B, D)."""

    def init_state(self) -> OptimizeeState:
        """Optimizee state at step 0 (None for a stateless problem)."""
        return None

    def loss(self, params: Tensor, step: int) -> Tensor:
        """Per-instance losses, shape (B,). Instance i depends only on row i of `params`,
        so the gradient of `loss(...).sum()` gives every instance its own gradient."""
        if type(self).evaluate is Problem.evaluate:
            raise NotImplementedError(f"{type(self).__name__} must implement loss() or evaluate()")
        return self.evaluate(params, step, self.init_state())[0]

    def evaluate(self, params: Tensor, step: int, state: OptimizeeState) -> tuple[Tensor, OptimizeeState]:
        """Per-instance losses (B,) and the next optimizee state."""
        return self.loss(params, step), state

    def reported_loss(self, loss: Tensor) -> Tensor:
        """The loss as the meta-objective, validation and logs count it. The optimizer sees what
        `evaluate` returns; a wrapper that rescales the loss for the optimizer undoes it here."""
        return loss

    def test_metrics(self, params: Tensor, state: OptimizeeState = None) -> dict[str, Tensor]:
        """{metric: (B,)} of the parameters on held-out data (only with `has_test_metrics`)."""
        raise NotImplementedError(f"{type(self).__name__} has no test set (has_test_metrics is False)")


class Family(ABC):
    """A distribution over problems; `sample(seeds)` is deterministic in the seeds.

    Optional capabilities are declared, with these defaults: `description` (what exactly is
    optimized, e.g. which feature network; recorded in checkpoints and every result),
    `training_mix` (a mix of families, one member per batch: for meta-training, not a test
    setting), `draws_images` (its parameters are images: l2o-eval can show each optimizer's,
    `gallery.steps`), and `validation_problems` (by default one batch of `sample`)."""

    spec: ParamSpec
    description: str | None = None
    training_mix: bool = False
    draws_images: bool = False

    @abstractmethod
    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> Problem:
        """One instance per seed; instance i is the same whatever else is in the batch."""

    def validation_problems(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> Problem | list[Problem]:
        """What meta-training validates on: one batch of the validation seeds (a mix: one per member)."""
        return self.sample(seeds, device)


def generator_for(seed: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def detach_state(state: OptimizeeState) -> OptimizeeState:
    """A (nested) state, the optimizee's or the learned optimizer's, cut from the graph (a truncation boundary)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(v) for v in state)
    return state


def select_instances(state: OptimizeeState, rows: Tensor) -> OptimizeeState:
    """The rows (instances) `rows` of a (nested) optimizee state whose tensors are (B, ...)."""
    if isinstance(state, Tensor):
        return state[rows]
    if isinstance(state, dict):
        return {k: select_instances(v, rows) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(select_instances(v, rows) for v in state)
    return state
