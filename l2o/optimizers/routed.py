"""Routing: a learned optimizer made of sub-optimizers with separate φ, one per group of tensors.

Each sub-optimizer owns the tensors its rule matches (first match wins, in config order);
a rule matches by parameter kind (`kinds: [conv_weight, conv_bias]`, `"*"` for any) and/or by
name glob (`names: ["features.*"]`); both given = both must hold. A tensor no rule matches is
an error that names it. The paper's CIFAR setting (one LSTM for the convolutional layers,
one for the fully-connected layers) and the authors' code's (conv weights vs everything else)
are two such configs (conf/optimizer/lstm_conv_fc.yaml, lstm_dm_cifar.yaml). All
sub-optimizers are meta-trained jointly (φ is the union of theirs).
"""
from __future__ import annotations

import fnmatch
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from l2o.errors import L2OError
from l2o.layout import KINDS, Layout
from l2o.optimizers.base import OptimizerNet, State, build_net


class Rule:
    """Which tensors a sub-optimizer owns."""

    def __init__(self, kinds: Sequence[str] = (), names: Sequence[str] = ()):
        self.kinds, self.names = list(kinds or []), list(names or [])
        if not self.kinds and not self.names:
            raise L2OError("a routing rule needs `kinds` and/or `names` (use kinds: ['*'] for everything).")
        unknown = [k for k in self.kinds if k != "*" and k not in KINDS]
        if unknown:
            raise L2OError(f"routing rule kinds {unknown} are unknown; allowed: {', '.join(KINDS)} or '*'.")

    def matches(self, name: str, kind: str) -> bool:
        kind_ok = not self.kinds or "*" in self.kinds or kind in self.kinds
        name_ok = not self.names or any(fnmatch.fnmatchcase(name, pattern) for pattern in self.names)
        return kind_ok and name_ok

    def config(self) -> dict[str, list[str]]:
        return {"kinds": self.kinds, "names": self.names}


class Routed(OptimizerNet):
    """`nets`: {name: {"match": {"kinds": [...], "names": [...]}, "net": OptimizerNet}}, in
    priority order. Each sub-optimizer sees the sub-layout of its tensors (same instances), so
    its coordinates of one instance stay together (what GAC averages over).

    `net` is only the template the presets' rules interpolate (`net: ${...net}`, swapped with
    `optimizer/net=rnnprop`); each rule's own `net` is what is built and stored."""

    NAME = "routed"

    def __init__(self, nets: Mapping[str, Mapping[str, Any]], net: Any = None):
        super().__init__()
        if not nets:
            raise L2OError("optimizer.nets must name at least one sub-optimizer.")
        self.rules = {name: Rule(**dict(spec.get("match") or {})) for name, spec in nets.items()}
        built = {name: spec["net"] if isinstance(spec["net"], OptimizerNet) else build_net(dict(spec["net"]))
                 for name, spec in nets.items()}
        self.nets = nn.ModuleDict(built)
        self._routes: dict[Layout, dict[str, list[int]]] = {}  # route() runs once per layout, not per step

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Routed":
        return cls(config["nets"])  # sub-nets are rebuilt by build_net (learned-optimizer classes only)

    def config(self) -> dict[str, Any]:
        return {"nets": {name: {"match": self.rules[name].config(), "net": self.nets[name].full_config()}
                         for name in self.rules}}

    def short_name(self) -> str:  # type: ignore[override]
        """The sub-optimizers' name when they share an architecture (two LSTMs: "lstm"), else "routed"."""
        names = {net.short_name() for net in self.nets.values()}
        return names.pop() if len(names) == 1 else self.NAME

    @property
    def coordinatewise(self) -> bool:  # type: ignore[override]
        return all(net.coordinatewise for net in self.nets.values())

    def compile_layers(self, enable: bool = True) -> "Routed":
        for net in self.nets.values():
            net.compile_layers(enable)
        self.compiled = enable
        return self

    def route(self, layout: Layout) -> dict[str, list[int]]:
        """The tensors (indices into `layout`) each sub-optimizer owns."""
        if layout in self._routes:
            return self._routes[layout]
        owned: dict[str, list[int]] = {name: [] for name in self.rules}
        for i, (name, kind) in enumerate(zip(layout.names, layout.kinds)):
            owner = next((sub for sub, rule in self.rules.items() if rule.matches(name, kind)), None)
            if owner is None:
                rules = "; ".join(f"{sub}: {rule.config()}" for sub, rule in self.rules.items())
                hint = (" A parameter given without its module has kind 'other': give LearnedOptimizer the model "
                        "(LearnedOptimizer.from_pretrained(NAME, model), not model.parameters()) so its kinds are known;"
                        " or" if kind == "other" else "")
                raise L2OError(f"parameter {name!r} (kind {kind}) matches no routing rule ({rules}).{hint} "
                               "add a rule for it, e.g. a last one with kinds: ['*'].")
            owned[owner].append(i)
        self._routes[layout] = owned
        return owned

    def init_state(self, layout: Layout, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        return {sub: self.nets[sub].init_state(layout.subset(tensors), device, dtype)
                for sub, tensors in self.route(layout).items()}

    def update(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
               step: int = 0) -> tuple[Tensor, State]:
        owned = self.route(layout)
        new_state: State = {}
        if sum(1 for t in owned.values() if t) == 1:  # one sub-optimizer owns everything: no gather
            sub = next(s for s, t in owned.items() if t)
            update, new_state[sub] = self.nets[sub].update(grad, state[sub], layout, loss, step)
            return update, {**{s: state[s] for s in owned if s != sub}, **new_state}
        update = torch.zeros_like(grad)
        for sub, tensors in owned.items():
            if not tensors:
                new_state[sub] = state[sub]
                continue
            index = layout.index(tensors, grad.device)
            u, new_state[sub] = self.nets[sub].update(grad[index], state[sub], layout.subset(tensors), loss, step)
            update = update.index_copy(0, index, u)
        return update, new_state

    def split_state(self, state: State, layout: Layout) -> list[State]:
        out: list[State] = [{} for _ in layout.names]
        for sub, tensors in self.route(layout).items():
            parts = self.nets[sub].split_state(state[sub], layout.subset(tensors))
            for i, part in zip(tensors, parts):
                out[i] = {f"{sub}/{k}": v for k, v in part.items()}
        return out

    def join_state(self, states: list[State], layout: Layout) -> State:
        joined: State = {}
        for sub, tensors in self.route(layout).items():
            prefix = f"{sub}/"
            parts = [{k[len(prefix):]: v for k, v in states[i].items() if k.startswith(prefix)} for i in tensors]
            joined[sub] = self.nets[sub].join_state(parts, layout.subset(tensors))
        return joined
