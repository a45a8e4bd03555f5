"""A trained learned optimizer as a drop-in `torch.optim.Optimizer`."""
from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from l2o.layout import Layout, module_entries
from l2o.optimizers.base import OptimizerNet


class LearnedOptimizer(torch.optim.Optimizer):
    """Runs a trained optimizer on any model, with the torch.optim contract users rely on:

        opt = LearnedOptimizer(model, checkpoint="outputs/.../checkpoints/best.pt")
        opt = LearnedOptimizer.from_pretrained("mnist", model)        # shipped with l2o
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)
        loss.backward(); opt.step(); sched.step(); opt.zero_grad()

    - `params`: a model (its parameters, named and with kinds, so routing rules written for
      conv/linear/norm parameters apply), an iterable of parameters or (name, parameter) pairs,
      or param-group dicts. Without a model every parameter's kind is "other".
    - `lr` of every param group multiplies the learned update (1.0 = as trained), so every
      `torch.optim.lr_scheduler` works.
    - Each param group's parameters (per device and dtype) form one instance: one batched call
      of the net, and architectures that share information across coordinates (LSTM+GAC)
      share it within that instance. The net is copied once per device and dtype; a shared
      net is never moved back and forth.
    - The per-parameter state (the net's state for that parameter's coordinates and `step`)
      lives in `self.state[p]`, saved and restored by `state_dict()` / `load_state_dict()`.
    - `state_dtype` (e.g. `torch.bfloat16`) stores that state in a lower precision and computes
      in the parameter's: the 2×20 LSTM's state takes 80 instead of 160 bytes per parameter.
      The LSTM then reads a rounded h and c each step, so updates differ from the fp32 ones by
      about bfloat16's relative precision (2^-8); `scripts/bench.py` measures by how much.
    - `chunk_size` (coordinates per chunk of a coordinatewise net's no-grad update; None = the
      net's own, 16,384 for the LSTM) bounds the step's working memory on large models.
    """

    def __init__(
        self,
        params: nn.Module | Iterable[torch.Tensor] | Iterable[tuple[str, torch.Tensor]] | Iterable[dict],
        checkpoint: str | Path | None = None,
        net: OptimizerNet | None = None,
        *,
        model: nn.Module | None = None,
        lr: float = 1.0,
        state_dtype: torch.dtype | None = None,
        chunk_size: int | None = None,
    ):
        if (checkpoint is None) == (net is None):
            raise ValueError("LearnedOptimizer needs exactly one of checkpoint= or net=.")
        if net is None:
            from l2o.checkpoint import load_checkpoint, net_from_checkpoint

            net = net_from_checkpoint(load_checkpoint(checkpoint))
        if isinstance(params, nn.Module):
            model, params = params, params.parameters()
        if not lr >= 0:
            raise ValueError(f"lr={lr!r} must be >= 0 (it multiplies the learned update).")
        super().__init__(params, defaults={"lr": lr})
        if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size > 0):
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer or None.")
        if state_dtype is not None and not (isinstance(state_dtype, torch.dtype) and state_dtype.is_floating_point):
            raise ValueError(f"state_dtype={state_dtype!r} must be a floating-point torch.dtype or None.")
        self.net = net.eval().requires_grad_(False)
        self.state_dtype, self.chunk_size = state_dtype, chunk_size
        self._layouts: dict[tuple[int, tuple[int, ...]], Layout] = {}
        self._nets: dict[tuple[torch.device, torch.dtype], OptimizerNet] = {}
        self._info = {id(p): (name, kind) for name, _, kind in module_entries(model)
                      for p in [model.get_parameter(name)]} if model is not None else {}

    @classmethod
    def from_pretrained(cls, name: str, params: Any, **kwargs: Any) -> "LearnedOptimizer":
        """A trained optimizer that ships inside the package (`l2o.pretrained.available()`)."""
        from l2o.pretrained import path_of

        return cls(params, checkpoint=path_of(name), **kwargs)

    def _net_for(self, device: torch.device, dtype: torch.dtype) -> OptimizerNet:
        key = (device, dtype)
        if key not in self._nets:
            net = copy.deepcopy(self.net).to(device=device, dtype=dtype)
            if self.chunk_size is not None:
                for module in net.modules():
                    if hasattr(module, "chunk_size"):
                        module.chunk_size = self.chunk_size
            self._nets[key] = net
        return self._nets[key]

    def _layout(self, group: dict[str, Any], gi: int, params: list[torch.Tensor]) -> Layout:
        """The instance's layout, built once per group and set of parameters with gradients."""
        key = (gi, tuple(id(p) for p in params))
        if key not in self._layouts:
            self._layouts[key] = self._build_layout(group, gi, params)
        return self._layouts[key]

    def _build_layout(self, group: dict[str, Any], gi: int, params: list[torch.Tensor]) -> Layout:
        ids = [id(q) for q in group["params"]]
        names = dict(zip(ids, group.get("param_names") or [f"group{gi}.param{i}" for i in range(len(ids))]))
        entries = []
        for p in params:
            name, kind = self._info.get(id(p), (names[id(p)], "other"))
            entries.append((name, tuple(p.shape), kind))
        return Layout.build(entries, num_instances=1)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is not None:
                    buckets[(p.device, p.dtype)].append(p)
            for (device, dtype), params in buckets.items():
                self._step_instance(group, gi, params, self._net_for(device, dtype), loss)
        return loss

    def _step_instance(self, group: dict[str, Any], gi: int, params: list[torch.Tensor], net: OptimizerNet,
                       loss: torch.Tensor | None) -> None:
        layout = self._layout(group, gi, params)
        device, dtype = params[0].device, params[0].dtype
        if any("step" not in self.state[p] for p in params):
            fresh = net.split_state(net.init_state(layout, device, dtype), layout)
            for p, s in zip(params, fresh):
                if "step" not in self.state[p]:
                    self.state[p].update(self._stored(s), step=torch.tensor(0.0))
        per_param = [{k: v.to(dtype) for k, v in self.state[p].items() if k != "step"} for p in params]
        grad = torch.cat([p.grad.reshape(-1) for p in params])
        step = int(self.state[params[0]]["step"])
        losses = loss.detach().reshape(1).to(device, dtype) if isinstance(loss, torch.Tensor) else None
        update, new_state = net.update(grad, net.join_state(per_param, layout), layout, losses, step)
        for p, u, s in zip(params, update.split(layout.sizes), net.split_state(new_state, layout)):
            p.add_(u.view_as(p), alpha=group["lr"])
            self.state[p].update(self._stored(s))
            self.state[p]["step"] += 1

    def _stored(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A parameter's net state as kept between steps (in `state_dtype` when set)."""
        if self.state_dtype is None:
            return state
        return {k: v.to(self.state_dtype) for k, v in state.items()}
