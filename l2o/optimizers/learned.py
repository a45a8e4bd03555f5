"""A trained coordinatewise LSTM as a drop-in `torch.optim.Optimizer`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import torch

from l2o.optimizers.lstm import CoordinatewiseLSTM


class LearnedOptimizer(torch.optim.Optimizer):
    """Runs a trained optimizer on any model:

        opt = LearnedOptimizer(model.parameters(), checkpoint="outputs/.../checkpoints/best.pt")
        loss.backward(); opt.step(); opt.zero_grad()

    All coordinates of a parameter group go through one batched LSTM call. Each
    parameter's LSTM state lives in `self.state[p]["lstm"]` (shape (2·layers, hidden,
    numel)), so `state_dict()` / `load_state_dict()` save and restore it like Adam's moments.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        checkpoint: str | Path | None = None,
        net: CoordinatewiseLSTM | None = None,
    ):
        if (checkpoint is None) == (net is None):
            raise ValueError("LearnedOptimizer needs exactly one of checkpoint= or net=.")
        if net is None:
            from l2o.checkpoint import load_checkpoint, net_from_checkpoint

            net = net_from_checkpoint(load_checkpoint(checkpoint))
        super().__init__(params, defaults={})
        self.net = net.eval().requires_grad_(False)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            device, dtype = params[0].device, params[0].dtype
            self.net.to(device=device, dtype=dtype)
            grads = torch.cat([p.grad.reshape(-1) for p in params])
            for p in params:
                if "lstm" not in self.state[p]:
                    self.state[p]["lstm"] = torch.zeros(2 * self.net.num_layers, self.net.hidden_size, p.numel(),
                                                        device=device, dtype=dtype)
            state = torch.cat([self.state[p]["lstm"] for p in params], dim=-1)
            update, new_state = self.net(grads, tuple(state.unbind(0)))
            if new_state:
                state = torch.stack(new_state)
            offset = 0
            for p in params:
                n = p.numel()
                p.add_(update[offset : offset + n].view_as(p))
                self.state[p]["lstm"] = state[..., offset : offset + n]
                offset += n
        return loss
