"""RNNprop (Lv, Jiang and Li, "Learning Gradient Descent: Better Generalization and Longer
Horizons", ICML 2017): the LSTM sees Adam-like normalized inputs instead of raw gradients.

Per coordinate, with β1 = β2 = 0.95 and ε = 1e-8 (configurable), at the t-th update:
    m_t = β1 m_{t-1} + (1 - β1) g,      v_t = β2 v_{t-1} + (1 - β2) g²
    m̂ = m_t / (1 - β1^t),               v̂ = v_t / (1 - β2^t)
    inputs  x = ( m̂ / (√v̂ + ε),  g / (√v̂ + ε) )
    a = ELU(W_in x + b_in)              (an input layer of `input_units` = 20 units)
    the 2×20 coordinatewise LSTM on a, then  update = output_scale · tanh(w·h + b)
Both inputs are invariant to the scale of the gradient, which is what lets it generalize to
other problems and longer runs; tanh bounds every step by output_scale (0.1 by default).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2o import checks
from l2o.layout import Layout
from l2o.optimizers.base import State
from l2o.optimizers.lstm import CoordinatewiseLSTM


class RNNprop(CoordinatewiseLSTM):
    """State: `m`, `v`, `t` (1, N) besides the LSTM's `h<l>`, `c<l>`."""

    NAME = "rnnprop"

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, output_scale: float = 0.1,
                 input_units: int = 20, beta1: float = 0.95, beta2: float = 0.95, eps: float = 1e-8,
                 odd: bool = False, time_scales: Sequence[float] | None = None):
        super().__init__(hidden_size, num_layers, preprocess_p=None, output_scale=output_scale, odd=odd,
                         time_scales=time_scales)
        checks.integer(input_units, "optimizer.input_units")
        for key, beta in (("beta1", beta1), ("beta2", beta2)):
            checks.number(beta, f"optimizer.{key}", at_least=0, below=1)
        checks.number(eps, "optimizer.eps", above=0)
        self.input_units, self.beta1, self.beta2, self.eps = input_units, float(beta1), float(beta2), float(eps)
        bound = 1.0 / 2**0.5  # torch.nn.Linear's init for 2 inputs
        self.in_weight = nn.Parameter(torch.empty(input_units, 2).uniform_(-bound, bound))
        self.in_bias = nn.Parameter(torch.empty(input_units, 1).uniform_(-bound, bound))
        fan_in = input_units + len(self.time_scales)  # the step features join the input layer's output
        if self.num_layers:
            self.weights[0] = self.layer_weight(fan_in)
        else:  # a linear net reads the input layer directly
            self.out_weight = nn.Parameter(torch.zeros(1, fan_in))

    def config(self) -> dict[str, Any]:
        return {"hidden_size": self.hidden_size, "num_layers": self.num_layers, "output_scale": self.output_scale,
                "input_units": self.input_units, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "odd": self.odd, "time_scales": list(self.time_scales) or None}

    def stream_state(self, layout: Layout, device: torch.device | str, dtype: torch.dtype) -> State:
        moments = {k: torch.zeros(1, layout.size, device=device, dtype=dtype) for k in ("m", "v", "t")}
        return {**moments, **super().stream_state(layout, device, dtype)}

    def inputs(self, grad: Tensor, state: State) -> tuple[Tensor, State]:
        """The two normalized inputs (2, N) and the new moments."""
        g = grad.reshape(1, -1)
        t = state["t"] + 1
        m = torch.lerp(g, state["m"], self.beta1)  # β1 m + (1 - β1) g
        v = torch.lerp(g * g, state["v"], self.beta2)
        m_hat, denom = self.corrected(m, v, t)
        return torch.cat((m_hat / denom, g / denom)), {"m": m, "v": v, "t": t}

    def corrected(self, m: Tensor, v: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Adam's bias-corrected first moment m̂ and denominator √v̂ + ε."""
        return m / (1 - self.beta1**t), (v / (1 - self.beta2**t)).sqrt() + self.eps

    def features(self, grad: Tensor, state: State, layout: Layout) -> tuple[Tensor, State]:
        x, moments = self.inputs(grad, state)
        return F.elu(torch.addmm(self.in_bias, self.in_weight, x)), moments

    def head(self, x: Tensor) -> Tensor:
        return torch.tanh(torch.addmm(self.out_bias, self.out_weight, x)) * self.output_scale
