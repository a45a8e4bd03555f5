"""A small per-parameter MLP learned optimizer, in the style of small_fc_lopt (Metz et al.,
learned_optimization) and VeLO's per-parameter networks: cheap enough to step real models.

Per coordinate, at optimizee step t (the t+1-th update), with β_k in `betas` and β2:
    m_k = β_k m_k + (1 - β_k) g            (momenta at several timescales)
    v   = β2 v + (1 - β2) g²,   d = √(v / (1 - β2^(t+1))) + ε
    inputs x = ( g/d,  m̂_1/d, ..., m̂_K/d,  tanh(t/τ − 1) for τ in time_scales )
    (a, b) = MLP(x) + S x          (ReLU hidden layers; S a linear skip)
    update = output_scale · tanh(a) · exp(magnitude_range · tanh(b))

Why this shape:
- every input but the step features is invariant to the scale of the gradient (normalized
  moments), which is what lets an optimizer meta-trained on small problems run on others;
- the step features tell it how far into the run it is (it can anneal as Adam + a schedule does);
- the update is bounded, |update| ≤ output_scale · e^magnitude_range, so no input can make it
  jump; direction and magnitude are separate outputs, as in small_fc_lopt;
- the skip S starts as the Adam direction (−m̂/d at the β closest to 0.9) and the MLP's output
  layer at zero, so before meta-training it is a bounded Adam with lr `output_scale`, and
  meta-training learns corrections rather than an optimizer from nothing;
- the state is K + 1 floats per coordinate (16 bytes with three momenta), against the 2×20 LSTM's
  80 floats; the step count comes from the caller (`step`), not from per-coordinate state.
The net is coordinatewise: `LearnedOptimizer` steps a large model in pieces.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2o import checks
from l2o.errors import L2OError
from l2o.layout import Layout
from l2o.optimizers.base import OptimizerNet, State
from l2o.optimizers.parts import StepFeatures


class MLPLOpt(OptimizerNet):
    """State: `m` (K, N), one row per β of `betas`, and `v` (1, N)."""

    NAME = "mlp_lopt"
    coordinatewise = True

    def __init__(self, hidden: Sequence[int] = (16,), betas: Sequence[float] = (0.5, 0.9, 0.99), beta2: float = 0.999,
                 eps: float = 1e-8, time_scales: Sequence[float] | None = (100, 1000, 10000),
                 output_scale: float = 1e-3, magnitude_range: float = 3.0):
        super().__init__()
        try:
            self.hidden = [int(h) for h in hidden]
            self.betas = [float(b) for b in betas]
        except (TypeError, ValueError):
            raise L2OError(f"optimizer.hidden={hidden!r} and optimizer.betas={betas!r} must be lists of numbers.") from None
        for i, h in enumerate(self.hidden):
            checks.integer(h, f"optimizer.hidden[{i}]")
        if not self.betas:
            raise L2OError("optimizer.betas is empty; the net needs at least one momentum.")
        for i, b in enumerate(self.betas):
            checks.number(b, f"optimizer.betas[{i}]", at_least=0, below=1)
        checks.number(beta2, "optimizer.beta2", at_least=0, below=1)
        checks.number(eps, "optimizer.eps", above=0)
        checks.number(output_scale, "optimizer.output_scale", above=0)
        checks.number(magnitude_range, "optimizer.magnitude_range", at_least=0)
        self.beta2, self.eps = float(beta2), float(eps)
        self.output_scale, self.magnitude_range = float(output_scale), float(magnitude_range)
        self.steps = StepFeatures(time_scales)
        self.num_inputs = 1 + len(self.betas) + len(self.steps)
        sizes = [self.num_inputs, *self.hidden]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = fan_in ** -0.5   # torch.nn.Linear's init
            self.weights.append(nn.Parameter(torch.empty(fan_out, fan_in).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(fan_out, 1).uniform_(-bound, bound)))
        self.out_weight = nn.Parameter(torch.zeros(2, sizes[-1]))
        self.out_bias = nn.Parameter(torch.zeros(2, 1))
        skip = torch.zeros(2, self.num_inputs)
        adam = min(range(len(self.betas)), key=lambda k: abs(self.betas[k] - 0.9))
        skip[0, 1 + adam] = -1.0    # direction: −m̂/d, Adam's
        self.skip = nn.Parameter(skip)
        self.register_buffer("_beta", torch.tensor(self.betas).unsqueeze(1), persistent=False)

    def config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "betas": list(self.betas), "beta2": self.beta2, "eps": self.eps,
                "time_scales": self.steps.config(), "output_scale": self.output_scale,
                "magnitude_range": self.magnitude_range}

    def init_state(self, layout: Layout, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        dtype = dtype or torch.get_default_dtype()
        return {"m": torch.zeros(len(self.betas), layout.size, device=device, dtype=dtype),
                "v": torch.zeros(1, layout.size, device=device, dtype=dtype)}

    def inputs(self, grad: Tensor, state: State, step: int) -> tuple[Tensor, State]:
        """The (num_inputs, N) inputs and the new moments."""
        g = grad.reshape(1, -1)
        beta = self._beta.to(g.dtype)
        m = torch.lerp(g.expand_as(state["m"]), state["m"], beta)   # β m + (1 − β) g, every β at once
        v = torch.lerp(g * g, state["v"], self.beta2)
        t = step + 1
        inv_d = (v * (1 / (1 - self.beta2**t))).sqrt_().add_(self.eps).reciprocal_()   # 1 / (√v̂ + ε)
        x = g.new_empty(self.num_inputs, g.shape[1])
        torch.mul(g, inv_d, out=x[:1])
        k = len(self.betas)
        torch.mul(m, inv_d, out=x[1 : 1 + k]).mul_(1 / (1 - beta**t))   # m̂ / (√v̂ + ε)
        if len(self.steps):
            x[1 + k :] = self.steps(step, g)
        return x, {"m": m, "v": v}

    def update(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
               step: int = 0) -> tuple[Tensor, State]:
        x, new_state = self.inputs(grad, state, step)
        if not torch.is_grad_enabled():
            return self._apply_no_grad(x).view_as(grad).clone(), new_state
        h = x
        for w, b in zip(self.weights, self.biases):
            h = torch.relu(torch.addmm(b, w, h))
        out = torch.addmm(torch.addmm(self.out_bias, self.out_weight, h), self.skip, x)
        direction, magnitude = out[0], out[1]
        update = torch.tanh(direction) * torch.exp(torch.tanh(magnitude) * self.magnitude_range) * self.output_scale
        return update.view_as(grad), new_state

    def _apply_no_grad(self, x: Tensor) -> Tensor:
        """The same MLP and head written into reused buffers (a step outside meta-training, e.g.
        `LearnedOptimizer`, calls it on pieces of equal size): allocating the (hidden, N)
        activations afresh every call, large blocks that the allocator returns to the system, cost
        more than the arithmetic on a 1M-parameter model. The result is a view of a buffer."""
        key = (x.shape[1], x.dtype, x.device)
        if getattr(self, "_work_key", None) != key:
            self._work_key = key
            self._work = [x.new_empty(n, x.shape[1]) for n in (*self.hidden, 2)]
        h = x
        for w, b, buf in zip(self.weights, self.biases, self._work):
            h = torch.addmm(b, w, h, out=buf).relu_()
        out = torch.addmm(self.out_bias, self.out_weight, h, out=self._work[-1]).addmm_(self.skip, x)
        direction, magnitude = out[0], out[1]
        magnitude.tanh_().mul_(self.magnitude_range).exp_().mul_(self.output_scale)
        return direction.tanh_().mul_(magnitude)
