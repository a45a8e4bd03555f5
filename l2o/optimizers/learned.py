"""A trained learned optimizer as a drop-in `torch.optim.Optimizer`."""
from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from l2o.layout import Layout, fan_in, module_entries
from l2o.optimizers.base import OptimizerNet
from l2o.optimizers.files import load_checkpoint, net_from_checkpoint, pretrained_path


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
      in the parameter's: the 2×20 LSTM's state takes 160 instead of 320 bytes per parameter.
      The LSTM then reads a rounded h and c each step, so updates differ from the fp32 ones by
      about bfloat16's relative precision (2^-8); `scripts/bench.py` measures by how much. Every
      state tensor is stored so (RNNprop's step counter stops at 256 in bfloat16, where its bias
      correction 1 - 0.95^t is already 1 - 2e-6).
    - `chunk_size` (coordinates per chunk of a coordinatewise net's no-grad update; None = the
      net's own: 16,384 for the LSTM, 65,536 for `mlp_lopt`) bounds the step's working memory on large models.
    - `weight_decay` (per param group, default 0) is decoupled, as AdamW's: every step first
      shrinks the parameters by lr · weight_decay, then adds the learned update.
    """

    def __init__(
        self,
        params: nn.Module | Iterable[torch.Tensor] | Iterable[tuple[str, torch.Tensor]] | Iterable[dict],
        checkpoint: str | Path | None = None,
        net: OptimizerNet | None = None,
        *,
        model: nn.Module | None = None,
        lr: float = 1.0,
        weight_decay: float = 0.0,
        state_dtype: torch.dtype | None = None,
        chunk_size: int | None = None,
    ):
        if (checkpoint is None) == (net is None):
            raise ValueError("LearnedOptimizer needs exactly one of checkpoint= or net=.")
        if net is None:
            net = net_from_checkpoint(load_checkpoint(checkpoint))
        if isinstance(params, nn.Module):
            model, params = params, params.parameters()
        if not lr >= 0:
            raise ValueError(f"lr={lr!r} must be >= 0 (it multiplies the learned update).")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay={weight_decay!r} must be >= 0.")
        super().__init__(params, defaults={"lr": lr, "weight_decay": weight_decay})
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
        return cls(params, checkpoint=pretrained_path(name), **kwargs)

    def _net_for(self, device: torch.device, dtype: torch.dtype) -> OptimizerNet:
        key = (device, dtype)
        if key not in self._nets:
            net = copy.deepcopy(self.net).to(device=device, dtype=dtype)
            if self.chunk_size is not None:
                for module in net.modules():
                    if isinstance(module, OptimizerNet) and module.chunk_size is not None:
                        module.chunk_size = self.chunk_size
            self._nets[key] = net
        return self._nets[key]

    def _layout(self, group: dict[str, Any], gi: int, piece: list[tuple[torch.Tensor, int, int]]) -> Layout:
        """The layout of one call's (parameter, start, end) ranges: built once, then cached."""
        key = (gi, tuple((id(p), s, e) for p, s, e in piece))
        if key not in self._layouts:
            ids = [id(q) for q in group["params"]]
            names = dict(zip(ids, group.get("param_names") or [f"group{gi}.param{i}" for i in range(len(ids))]))
            entries = []
            for p, s, e in piece:
                name, kind = self._info.get(id(p), (names[id(p)], "other"))
                rows = (e - s) // fan_in(p.shape)
                entries.append((name, tuple(p.shape) if (s, e) == (0, p.numel()) else (rows, *p.shape[1:]), kind))
            self._layouts[key] = Layout.build(entries, num_instances=1)
        return self._layouts[key]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # torch.optim casts floating-point state to the parameter's dtype
        for p, state in self.state.items():
            self.state[p] = {**self._stored({k: v for k, v in state.items() if k != "step"}),
                             **({"step": state["step"]} if "step" in state else {})}

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
                if group.get("weight_decay", 0.0):  # (absent from optimizers saved before it existed)
                    torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
                self._step_instance(group, gi, params, self._net_for(device, dtype), loss)
        return loss

    def _step_instance(self, group: dict[str, Any], gi: int, params: list[torch.Tensor], net: OptimizerNet,
                       loss: torch.Tensor | None) -> None:
        device, dtype = params[0].device, params[0].dtype
        losses = loss.detach().reshape(1).to(device, dtype) if isinstance(loss, torch.Tensor) else None
        for p in params:
            if "step" not in self.state[p]:  # created directly in the stored dtype: no model-sized fp32 copy
                layout = self._layout(group, gi, [(p, 0, p.numel())])
                fresh = net.init_state(layout, device, self.state_dtype or dtype)
                self.state[p].update(self._stored(net.split_state(fresh, layout)[0]), step=torch.tensor(0.0))
        step = int(self.state[params[0]]["step"])
        for piece in self._pieces(params, net):
            self._step_piece(group, gi, piece, net, losses, step)
        for p in params:
            self.state[p]["step"] += 1

    def _pieces(self, params: list[torch.Tensor], net: OptimizerNet) -> list[list[tuple[torch.Tensor, int, int]]]:
        """The calls of the net for one instance, as (parameter, start, end) coordinate ranges.

        A coordinatewise net (`net.coordinatewise`) gives every coordinate the same update
        whichever call it is in, so the coordinates go in calls of about `chunk_size`: small
        parameters together, a large one in slices. Each call reads and writes only its slice
        of the stored state, so a step's working memory does not grow with the model. Other
        nets (LSTM+GAC averages over the instance) get the whole instance in one call."""
        if not net.coordinatewise:
            return [[(p, 0, p.numel()) for p in params]]
        limit = self.chunk_size or net.chunk_size or 16384
        pieces: list[list[tuple[torch.Tensor, int, int]]] = [[]]
        size = 0
        for p in params:
            sliceable = p.is_contiguous() and p.grad.is_contiguous()
            row = fan_in(p.shape)   # slices are whole rows: they keep the fan-in
            start = 0
            while start < p.numel():
                if pieces[-1] and size + (row if sliceable else 1) > limit:
                    pieces.append([])
                    size = 0
                end = min(p.numel(), start + max(1, (limit - size) // row) * row) if sliceable else p.numel()
                pieces[-1].append((p, start, end))
                size += end - start
                start = end
        return pieces

    def _step_piece(self, group: dict[str, Any], gi: int, piece: list[tuple[torch.Tensor, int, int]],
                    net: OptimizerNet, losses: torch.Tensor | None, step: int) -> None:
        layout = self._layout(group, gi, piece)
        dtype = piece[0][0].dtype
        whole = [s == 0 and e == p.numel() for p, s, e in piece]
        per_param = [{k: (v if w else v[..., s:e]).to(dtype) for k, v in self.state[p].items() if k != "step"}
                     for (p, s, e), w in zip(piece, whole)]
        grads = [p.grad.reshape(-1) if w else p.grad.view(-1)[s:e] for (p, s, e), w in zip(piece, whole)]
        grad = torch.cat(grads) if len(grads) > 1 else grads[0]
        state = net.join_state(per_param, layout)
        if net.in_place:  # the state is overwritten where it is; a copy only where it was joined or cast
            update, new_state = net.update_(grad, state, layout, losses, step), state
        else:
            update, new_state = net.update(grad, state, layout, losses, step)
        for (p, s, e), w, u, new in zip(piece, whole, update.split(layout.sizes), net.split_state(new_state, layout)):
            if w:
                p.add_(u.view_as(p), alpha=group["lr"])
                self.state[p].update(self._stored(new))
            else:  # a slice of a large parameter: written in place, into the stored state's dtype
                p.view(-1)[s:e].add_(u, alpha=group["lr"])
                for k, v in new.items():
                    stored = self.state[p][k][..., s:e]
                    if v.data_ptr() != stored.data_ptr() or v.dtype != stored.dtype:
                        stored.copy_(v)

    def _stored(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A parameter's net state as kept between steps (in `state_dtype` when set)."""
        if self.state_dtype is None:
            return dict(state)
        return {k: v.to(self.state_dtype) for k, v in state.items()}
