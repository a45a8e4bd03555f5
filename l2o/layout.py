"""Where every coordinate the learned optimizer sees comes from: instance, tensor and kind.

The learned optimizer works on one flat vector of N = B·D coordinates: B problem instances
of D coordinates each, instance-major (coordinate n belongs to instance n // D). A `Layout`
names the tensors of one instance, their shapes and their *kind* (conv weight, linear bias,
norm scale, pixel, ...), so routing can send each tensor to its own sub-optimizer and
global-averaging cells can average within an instance, while the hot path stays one flat
tensor program.

One function, `Layout.build`, makes the layout both from an optimizee's `ParamSpec`
(meta-training) and from a user's `nn.Module` (`LearnedOptimizer`), so training and
deployment cannot disagree about what a parameter is.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

KINDS = ("conv_weight", "conv_bias", "linear_weight", "linear_bias", "norm_scale", "norm_shift", "pixel", "other")

# module types -> the kinds of their `weight` and `bias` parameters
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Layout:
    """Names, shapes and kinds of one instance's tensors (in flat order) and the instance count."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    kinds: tuple[str, ...]
    num_instances: int = 1

    @classmethod
    def build(cls, entries: Iterable[tuple[str, Sequence[int], str]], num_instances: int = 1) -> "Layout":
        """The layout of (name, shape, kind) entries, one per tensor of an instance."""
        entries = list(entries)
        for name, _, kind in entries:
            if kind not in KINDS:
                raise ValueError(f"parameter {name!r} has unknown kind {kind!r}; allowed: {', '.join(KINDS)}.")
        return cls(tuple(e[0] for e in entries), tuple(tuple(int(s) for s in e[1]) for e in entries),
                   tuple(e[2] for e in entries), int(num_instances))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def fan_ins(self) -> tuple[int, ...]:
        """Inputs per output unit of each tensor (prod(shape[1:]) for a weight, 1 for a vector): what
        a layer's pre-activations sum over, so what a step of one size on every coordinate moves
        them by."""
        return tuple(fan_in(s) for s in self.shapes)

    @property
    def numel(self) -> int:
        """D, the coordinates of one instance."""
        return sum(self.sizes)

    @property
    def size(self) -> int:
        """N = B·D, every coordinate of every instance."""
        return self.numel * self.num_instances

    def subset(self, tensors: Sequence[int]) -> "Layout":
        """The layout of some of the tensors (same instances), in the given order."""
        return Layout(tuple(self.names[i] for i in tensors), tuple(self.shapes[i] for i in tensors),
                      tuple(self.kinds[i] for i in tensors), self.num_instances)

    def index(self, tensors: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        """Positions in the flat N-vector of the coordinates of `tensors`, in the order of
        `subset(tensors)` (instance-major), so `flat[index]` is the subset's own flat vector."""
        return _index(self, tuple(tensors), str(device))


def fan_in(shape: Sequence[int]) -> int:
    """Inputs per output unit of a tensor of this shape: prod(shape[1:]) for a weight (nn.Linear's
    (out, in), a conv's (out, in, *kernel)), 1 for a vector."""
    return math.prod(shape[1:]) if len(shape) > 1 else 1


@functools.lru_cache(maxsize=256)
def _index(layout: Layout, tensors: tuple[int, ...], device: str) -> Tensor:
    starts = [0]
    for n in layout.sizes:
        starts.append(starts[-1] + n)
    within = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in tensors]) if tensors else torch.zeros(0, dtype=torch.long)
    base = torch.arange(layout.num_instances).unsqueeze(1) * layout.numel
    return (base + within).reshape(-1).to(device)


def module_entries(model: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, kind) of every parameter of `model`, as `named_parameters` lists them."""
    kinds: dict[int, str] = {}
    for module in model.modules():
        for pname, kind_w, kind_b in _module_kinds(module):
            p = getattr(module, pname, None)
            if isinstance(p, nn.Parameter):
                kinds.setdefault(id(p), kind_w if pname == "weight" else kind_b)
    return [(name, tuple(p.shape), kinds.get(id(p), "other")) for name, p in model.named_parameters()]


def _module_kinds(module: nn.Module) -> list[tuple[str, str, str]]:
    if isinstance(module, _CONV):
        return [("weight", "conv_weight", ""), ("bias", "", "conv_bias")]
    if isinstance(module, nn.Linear):
        return [("weight", "linear_weight", ""), ("bias", "", "linear_bias")]
    if isinstance(module, _NORM):
        return [("weight", "norm_scale", ""), ("bias", "", "norm_shift")]
    return []


def module_layout(model: nn.Module) -> Layout:
    """The layout of a user's model: one instance, its parameters in `named_parameters` order."""
    return Layout.build(module_entries(model), num_instances=1)
