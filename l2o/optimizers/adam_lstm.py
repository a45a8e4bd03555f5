"""AdamLSTM: Adam whose every step a coordinatewise LSTM rescales and corrects, starting as Adam.

The paper's LSTM and RNNprop must learn from nothing what a tuned Adam already does, and on
problems where tuned Adam is strong (neural art, long horizons) their truncated, first-order
meta-training stops a few percent short of it. Here Adam is the backbone and φ learns only the
departure from it (the hybrid shape of learned optimizers built on a hand-designed update, e.g.
the Adam-feature and Adam-hyperparameter-controller optimizers of Metz et al. 2020/2022):

    d = m̂ / (√v̂ + ε)                        Adam's direction (β1 = 0.9, β2 = 0.999 by default)
    (a, b) = W h + c                         two outputs per coordinate from RNNprop's LSTM
    update = lr · ( −exp(lr_range · tanh(a)) · d + output_scale · tanh(b) )

W and c start at zero, so the untrained net *is* Adam with learning rate `lr` (set it to the tuned
Adam's); φ can scale each coordinate's step by e^±lr_range and add a bounded correction. The LSTM
sees RNNprop's scale-free inputs (m̂/√v̂, g/√v̂) with these same moments.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2o import checks
from l2o.optimizers.base import State
from l2o.optimizers.rnnprop import RNNprop


class AdamLSTM(RNNprop):
    """State: Adam's `m`, `v`, `t` (1, N) besides the LSTM's `h<l>`, `c<l>`."""

    NAME = "adam_lstm"

    def __init__(self, lr: float = 1e-3, lr_range: float = 2.0, hidden_size: int = 20, num_layers: int = 2,
                 output_scale: float = 1.0, input_units: int = 20, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, odd: bool = False, time_scales: Sequence[float] | None = None):
        super().__init__(hidden_size, num_layers, output_scale, input_units, beta1, beta2, eps, odd, time_scales)
        for key, value in (("lr", lr), ("lr_range", lr_range)):
            checks.number(value, f"optimizer.{key}", above=0)
        checks.number(output_scale, "optimizer.output_scale", at_least=0)
        self.lr, self.lr_range = float(lr), float(lr_range)
        fan_in = self.out_weight.shape[1]
        self.out_weight = nn.Parameter(torch.zeros(2, fan_in))  # zero: the untrained net is Adam
        self.out_bias = nn.Parameter(torch.zeros(2, 1))

    def config(self) -> dict[str, Any]:
        return {"lr": self.lr, "lr_range": self.lr_range, **super().config()}

    def head(self, x: Tensor) -> Tensor:
        return torch.addmm(self.out_bias, self.out_weight, x)  # rows (a, b)

    def output(self, out: Tensor, state: State) -> Tensor:
        """Adam's step from the new moments, scaled by e^(lr_range·tanh a), plus the bounded tanh b."""
        m_hat, denom = self.corrected(state["m"], state["v"], state["t"])
        a, b = out[0:1], out[1:2]
        scale = torch.exp(self.lr_range * torch.tanh(a))
        return (self.lr * (torch.tanh(b) * self.output_scale - scale * m_hat / denom)).reshape(-1)
