"""The learned-optimizer interface every architecture implements (the optax shape: init + update).

A learned optimizer is an `nn.Module` whose parameters are φ. It never sees models or
tensors, only the flat vector of N coordinates described by a `Layout` (see l2o.layout):

    state = net.init_state(layout, device, dtype)
    update, state = net.update(grad, state, layout, loss, step)     # θ ← θ + update

`grad` and `update` are (N,) vectors; `loss` is the (B,) per-instance loss at the current
parameters (for architectures that want it), `step` the optimizee step. The state is a dict
of tensors whose last axis is the N coordinates in layout order; everything else (the
trainer, the unroll, evaluation, checkpoints, the CLIs, `LearnedOptimizer`) uses only this
interface, so a new architecture is one file plus one YAML.
"""
from __future__ import annotations

import importlib
from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from l2o.errors import L2OError
from l2o.layout import Layout

State = dict[str, Any]  # tensors (..., N), or for composite optimizers dicts of such states


class OptimizerNet(nn.Module):
    """Base class of learned optimizers. Subclasses set φ in `__init__`, and implement
    `init_state`, `update` and `config` (the keyword arguments that rebuild them).

    What callers may rely on is declared, not probed:
    - `NAME`: the name results use for it (default: the class name, lowercased);
    - `coordinatewise = True`: a coordinate's update depends only on its own gradient and state
      (and the loss and step), so callers may split the coordinates into any pieces and get the
      same updates: `LearnedOptimizer` then steps a large model in pieces;
    - `chunk_size`: coordinates per piece of its no-grad update: `LearnedOptimizer` calls a
      coordinatewise net on pieces of this size (None: 16,384), large enough that per-call
      overhead is small, small enough that the step's working memory stays bounded;
    - `in_place`: it has `update_`, a no-grad update that overwrites the state it is given
      (torch.optim's way) and may return a view of a buffer its next call reuses, so
      `LearnedOptimizer` neither allocates nor copies a model-sized state every step;
    - `compiled`: whether `compile_layers` switched on fused kernels."""

    NAME: str | None = None
    coordinatewise: bool = False
    chunk_size: int | None = None
    in_place: bool = False
    compiled: bool = False

    @abstractmethod
    def init_state(self, layout: Layout, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        """The state before the first step for the coordinates of `layout`."""

    @abstractmethod
    def update(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
               step: int = 0) -> tuple[Tensor, State]:
        """The update of every coordinate (same shape as `grad`) and the next state."""

    def update_(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
                step: int = 0) -> Tensor:
        """`update` without autograd, overwriting `state` (only where `in_place` is declared)."""
        raise NotImplementedError(f"{type(self).__name__} declares no in-place update (in_place = False).")

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this architecture (stored in checkpoints)."""

    def forward(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
                step: int = 0) -> tuple[Tensor, State]:
        return self.update(grad, state, layout, loss, step)

    def full_config(self) -> dict[str, Any]:
        """`config()` with the `_target_` that builds it: what checkpoints record."""
        cls = type(self)
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **self.config()}

    @classmethod
    def short_name(cls) -> str:
        """The name results use for this architecture by default (`NAME`, else the class name)."""
        return cls.NAME or cls.__name__.lower()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "OptimizerNet":
        return cls(**config)

    def init_free_fields(self, config: dict[str, Any]) -> set[str]:
        """The fields of this net's config that may differ from a checkpoint's architecture `config`
        when `init=` starts a run from its φ (`CoordinatewiseLSTM`: `odd`, and `time_scales` that φ
        lacked). The default: none, every field must match."""
        return set()

    def adapt_state_dict(self, state_dict: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """A φ saved by the architecture `config` (a checkpoint's), fitted to this net for `init=`:
        where this net adds inputs that φ lacked (`CoordinatewiseLSTM.time_scales`) their weights
        start at zero. The default fits nothing: the weights must match as they are."""
        return state_dict

    def compile_layers(self, enable: bool = True) -> "OptimizerNet":
        """Switch on fused (torch.compile'd) kernels where the architecture has them; results
        equal the eager path to float tolerance. The default has none."""
        return self

    # --- per-tensor state, for LearnedOptimizer (one instance) ---------------------------
    def split_state(self, state: State, layout: Layout) -> list[State]:
        """One state per tensor of a one-instance `layout` (torch.optim keeps state per parameter)."""
        return [{k: v for k, v in zip(state, parts)} for parts in
                zip(*(v.split(layout.sizes, dim=-1) for v in state.values()))] if state else [{} for _ in layout.sizes]

    def join_state(self, states: list[State], layout: Layout) -> State:
        """The inverse of `split_state`."""
        if not states or not states[0]:
            return {}
        if len(states) == 1:
            return dict(states[0])
        return {k: torch.cat([s[k] for s in states], dim=-1) for k in states[0]}


def build_net(config: dict[str, Any]) -> OptimizerNet:
    """Rebuild an architecture from its `full_config()` (as a checkpoint stores it).

    Only subclasses of `OptimizerNet` are built: a checkpoint's `_target_` is never called
    unless it names a learned optimizer, so a crafted checkpoint cannot run other code."""
    config = dict(config)
    target = config.pop("_target_", None)
    if not isinstance(target, str) or "." not in target:
        raise L2OError(f"optimizer config {config!r} has no _target_ naming a learned-optimizer class.")
    module_name, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise L2OError(f"learned optimizer {target!r} cannot be imported ({exc}); is the package that defines it "
                       "installed or on PYTHONPATH?") from exc
    if not (isinstance(cls, type) and issubclass(cls, OptimizerNet)):
        raise L2OError(f"{target!r} is not a learned optimizer (a subclass of l2o.optimizers.OptimizerNet); refused.")
    return cls.from_config(config)

