"""Parts any coordinatewise learned optimizer can be built with.

- `StepFeatures`: inputs that tell a net how far into the run it is, tanh(t/τ − 1) at optimizee
  step t for each τ in `time_scales` (the training-step features of Metz et al.'s learned
  optimizers), the same for every coordinate. A net whose only inputs are gradients cannot tell
  step 9,000 from step 500 when the gradients look alike, so it cannot shrink its steps late in a
  run as Adam does. `widen_first_layer` fits a φ trained without them: their weights start at zero.
- `odd_update` / `Odd(net)`: the update as an odd function of the gradient history, as SGD's,
  NAG's, RMSprop's and Adam's are: the net runs on the gradients and on their negatives, each
  stream with its own state, and steps by half the difference. A coordinate whose gradient has
  always been 0 then never moves (a plain net's biases move it every step). It doubles the
  compute. `CoordinatewiseLSTM` and its subclasses take both as `odd` and `time_scales`; `Odd`
  wraps any other coordinatewise net (a user's own).
- `shrink_wide` / `warmup_factor` / `Scaled(net)`: steps shrunk on wide tensors by
  fan_in_ref / fan_in (µP's rule for Adam's learning rate) and grown linearly over a warm-up.
  A net meta-trained on small layers learns step sizes that move a wide layer's pre-activations
  fan_in times further; and at step 0 a net whose inputs are normalized moments sees ±1 on every
  model, so its first steps are one learned size whatever the model. `MLPLOpt` takes both as
  `fan_in_ref` and `warmup`; `Scaled` gives them to any other coordinatewise net (RNNprop, the
  LSTM), so architectures are compared on a task mix under the same rule.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import Tensor

from l2o import checks
from l2o.errors import L2OError
from l2o.layout import Layout
from l2o.optimizers.base import OptimizerNet, State, build_net

MIRROR = "mirror."  # state-key prefix of the negated stream

Stream = Callable[[Tensor, State], tuple[Tensor, State]]   # (grad, one stream's state) -> (update, state)


def mirrored(state: State) -> State:
    """A stream's initial state, twice: as is, and for the negated stream under `mirror.`."""
    return {**state, **{MIRROR + k: v.clone() for k, v in state.items()}}


def odd_update(stream: Stream, grad: Tensor, state: State) -> tuple[Tensor, State]:
    """½ (stream(g) − stream(−g)), each stream with its own half of `state` (see `mirrored`)."""
    plus = {k: v for k, v in state.items() if not k.startswith(MIRROR)}
    minus = {k[len(MIRROR):]: v for k, v in state.items() if k.startswith(MIRROR)}
    up, plus = stream(grad, plus)
    down, minus = stream(-grad, minus)
    return 0.5 * (up - down), {**plus, **{MIRROR + k: v for k, v in minus.items()}}


class StepFeatures:
    """tanh(t/τ − 1) for each τ of `time_scales` (optimizee steps, > 0); empty when none."""

    def __init__(self, time_scales: Sequence[float] | None = None, key: str = "optimizer.time_scales"):
        try:
            self.scales = tuple(float(t) for t in time_scales or ())
        except (TypeError, ValueError):
            self.scales = (math.nan,)
        if not all(math.isfinite(t) and t > 0 for t in self.scales):
            raise L2OError(f"{key}={time_scales!r} must be numbers > 0 (optimizee steps).")

    def __len__(self) -> int:
        return len(self.scales)

    def config(self) -> list[float] | None:
        return list(self.scales) or None

    def __call__(self, step: int, like: Tensor) -> Tensor:
        """(len, N) rows for the N columns of `like`: the same features for every coordinate."""
        t = torch.tensor([step / tau - 1.0 for tau in self.scales], dtype=like.dtype, device=like.device)
        return torch.tanh(t).unsqueeze(1).expand(-1, like.shape[1])

    @staticmethod
    def widen_first_layer(weight: Tensor, added: int) -> Tensor:
        """A first-layer matrix [.., x, bias] with `added` zero columns for new inputs after x, so the
        net computes exactly what it did until meta-training moves them."""
        split = weight.shape[1] - 1
        return torch.cat((weight[:, :split], weight.new_zeros(weight.shape[0], added), weight[:, split:]), 1)


class Odd(OptimizerNet):
    """`net` (any coordinatewise OptimizerNet) run as an odd function of the gradient history:
    φ is `net`'s; the state holds one state of `net` per stream."""

    NAME = "odd"
    coordinatewise = True

    def __init__(self, net: OptimizerNet | dict[str, Any]):
        super().__init__()
        self.net = build_net(net) if isinstance(net, dict) else net
        if not self.net.coordinatewise:
            raise L2OError(f"Odd needs a coordinatewise net; {type(self.net).__name__} is not.")

    def config(self) -> dict[str, Any]:
        return {"net": self.net.full_config()}

    def init_state(self, layout: Layout, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        return mirrored(self.net.init_state(layout, device, dtype))

    def update(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
               step: int = 0) -> tuple[Tensor, State]:
        return odd_update(lambda g, s: self.net.update(g, s, layout, loss, step), grad, state)

    def compile_layers(self, enable: bool = True) -> "Odd":
        self.net.compile_layers(enable)
        self.compiled = enable
        return self


@functools.lru_cache(maxsize=256)
def fan_in_factors(layout: Layout, fan_in_ref: float | None) -> tuple[tuple[int, int, float], ...]:
    """(start, end, fan_in_ref / fan_in) of every coordinate range (tensor of an instance, in the
    flat N-vector) whose fan-in exceeds fan_in_ref; none without fan_in_ref."""
    if fan_in_ref is None:
        return ()
    ranges, start = [], 0
    for _ in range(layout.num_instances):
        for size, fan_in in zip(layout.sizes, layout.fan_ins):
            if fan_in > fan_in_ref:
                ranges.append((start, start + size, fan_in_ref / fan_in))
            start += size
    return tuple(ranges)


def shrink_wide(update: Tensor, layout: Layout, fan_in_ref: float | None, in_place: bool = False) -> Tensor:
    """`update` × fan_in_ref / fan_in on the coordinates of every tensor whose fan-in exceeds
    fan_in_ref (`fan_in_factors`); `in_place` overwrites it (no autograd)."""
    ranges = fan_in_factors(layout, fan_in_ref)
    if in_place:
        for start, end, factor in ranges:
            update[start:end].mul_(factor)
        return update
    if not ranges:
        return update
    scale = torch.ones_like(update)
    for start, end, factor in ranges:
        scale[start:end] = factor
    return update * scale


def warmup_factor(step: int, warmup: int | None) -> float:
    """min(1, (step + 1) / warmup) at optimizee step `step`; 1 without a warm-up."""
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


class Scaled(OptimizerNet):
    """`net` (any coordinatewise OptimizerNet) with its update × fan_in_ref / fan_in on tensors whose
    fan-in exceeds `fan_in_ref`, and × min(1, (t + 1) / warmup) over the first `warmup` steps.
    φ and state are `net`'s; either setting null is off, both null is `net` itself."""

    NAME = "scaled"
    coordinatewise = True

    def __init__(self, net: OptimizerNet | dict[str, Any], fan_in_ref: float | None = None, warmup: int | None = None):
        super().__init__()
        self.net = build_net(net) if isinstance(net, dict) else net
        if not self.net.coordinatewise:
            raise L2OError(f"Scaled needs a coordinatewise net; {type(self.net).__name__} is not.")
        if fan_in_ref is not None:
            checks.number(fan_in_ref, "optimizer.fan_in_ref", at_least=1)
        self.fan_in_ref = None if fan_in_ref is None else float(fan_in_ref)
        self.warmup = None if warmup is None else checks.integer(warmup, "optimizer.warmup")
        self.in_place, self.chunk_size = self.net.in_place, self.net.chunk_size

    def short_name(self) -> str:  # type: ignore[override]
        return self.net.short_name()

    def config(self) -> dict[str, Any]:
        return {"net": self.net.full_config(), "fan_in_ref": self.fan_in_ref, "warmup": self.warmup}

    def init_state(self, layout: Layout, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        return self.net.init_state(layout, device, dtype)

    def scale(self, update: Tensor, layout: Layout, step: int, in_place: bool = False) -> Tensor:
        """`update` times the warm-up and fan-in factors; `in_place` overwrites it (no autograd)."""
        factor = warmup_factor(step, self.warmup)
        if factor != 1.0:
            update = update.mul_(factor) if in_place else update * factor
        return shrink_wide(update, layout, self.fan_in_ref, in_place)

    def update(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
               step: int = 0) -> tuple[Tensor, State]:
        update, state = self.net.update(grad, state, layout, loss, step)
        return self.scale(update, layout, step), state

    def update_(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
                step: int = 0) -> Tensor:
        return self.scale(self.net.update_(grad, state, layout, loss, step), layout, step, in_place=True)

    def compile_layers(self, enable: bool = True) -> "Scaled":
        self.net.compile_layers(enable)
        self.compiled = enable
        return self
