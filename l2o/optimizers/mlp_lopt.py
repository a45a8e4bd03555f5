"""A small per-parameter MLP learned optimizer, in the style of small_fc_lopt (Metz et al.,
learned_optimization) and VeLO's per-parameter networks: cheap enough to step real models.

Per coordinate, at optimizee step t (the t+1-th update), with β_k in `betas` and β2:
    m_k = β_k m_k + (1 - β_k) g            (momenta at several timescales)
    v   = β2 v + (1 - β2) g²,   d = √(v / (1 - β2^(t+1))) + ε
    inputs x = ( g/d,  m̂_1/d, ..., m̂_K/d,  tanh(t/τ − 1) for τ in time_scales )
    (a, b) = MLP(x) + S x          (ReLU hidden layers; S a linear skip)
    update = output_scale · tanh(a) · exp(magnitude_range · tanh(b)) · min(1, fan_in_ref / fan_in)
             · min(1, (t + 1) / warmup)

Why this shape:
- every input but the step features is invariant to the scale of the gradient (normalized
  moments), which is what lets an optimizer meta-trained on small problems run on others;
- the step features tell it how far into the run it is (it can anneal as Adam + a schedule does);
- the update is bounded, |update| ≤ output_scale · e^magnitude_range, so no input can make it
  jump; direction and magnitude are separate outputs, as in small_fc_lopt;
- the skip S starts as the Adam direction (−m̂/d at the β closest to 0.9) and the MLP's output
  layer at zero, so before meta-training it is a bounded Adam with lr `output_scale`, and
  meta-training learns corrections rather than an optimizer from nothing;
- with `fan_in_ref`, a tensor whose rows sum over more than fan_in_ref inputs takes steps
  shrunk by fan_in_ref / fan_in (µP's rule for Adam's learning rate): at the first step every
  normalized input is ±1, so one learned magnitude goes to every coordinate, and a sign-aligned
  step moves a pre-activation by magnitude · fan_in. Meta-trained on small MLPs, that magnitude
  (≳ 0.01) blew up the 3,072- and 9,216-input layers of real models it never saw;
- with `warmup`, steps grow linearly over the first `warmup` steps, as Adam's do under the
  usual warm-up schedule. At step 0 every normalized input is ±1 whatever the problem, so the
  net's first steps are one learned size for every model; meta-trained on small problems, that
  size was the largest it can take, and it set a 1.2M-parameter CNN back for the rest of its run;
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
from l2o.optimizers.parts import StepFeatures, shrink_wide, warmup_factor


class MLPLOpt(OptimizerNet):
    """State: `m` (K, N), one row per β of `betas`, and `v` (1, N)."""

    NAME = "mlp_lopt"
    coordinatewise = True
    in_place = True
    chunk_size = 1 << 16   # coordinates per `LearnedOptimizer` call (a 6 MB work buffer); fastest measured

    def __init__(self, hidden: Sequence[int] = (16,), betas: Sequence[float] = (0.5, 0.9, 0.99), beta2: float = 0.999,
                 eps: float = 1e-8, time_scales: Sequence[float] | None = (100, 1000, 10000),
                 output_scale: float = 1e-3, magnitude_range: float = 3.0, fan_in_ref: float | None = None,
                 warmup: int | None = None):
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
        if fan_in_ref is not None:
            checks.number(fan_in_ref, "optimizer.fan_in_ref", at_least=1)
        self.fan_in_ref = None if fan_in_ref is None else float(fan_in_ref)
        self.warmup = None if warmup is None else checks.integer(warmup, "optimizer.warmup")
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
                "magnitude_range": self.magnitude_range, "fan_in_ref": self.fan_in_ref, "warmup": self.warmup}

    def _scale(self, step: int) -> float:
        """output_scale, times the warm-up factor at optimizee step `step`."""
        return self.output_scale * warmup_factor(step, self.warmup)

    def init_state(self, layout: Layout, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        dtype = dtype or torch.get_default_dtype()
        return {"m": torch.zeros(len(self.betas), layout.size, device=device, dtype=dtype),
                "v": torch.zeros(1, layout.size, device=device, dtype=dtype)}

    def moments(self, grad: Tensor, state: State, step: int, work: Tensor | None = None) -> tuple[Tensor, State]:
        """The (1 + K, N) scale-invariant inputs (g/d, m̂_k/d) and the new moments. With `work`
        (a (1 + K + 1, N) buffer) nothing is allocated: the moments overwrite `state`, the inputs
        go to work[:1 + K] and g², 1/d pass through its last row."""
        g = grad.reshape(1, -1)
        beta = self._beta.to(g.dtype)
        k, t = len(self.betas), step + 1
        if work is None:
            m = torch.lerp(g.expand_as(state["m"]), state["m"], beta)   # β m + (1 − β) g, every β at once
            v = torch.lerp(g * g, state["v"], self.beta2)
            x, inv_d = g.new_empty(1 + k, g.shape[1]), v * (1 / (1 - self.beta2**t))
        else:
            m, v, x, tmp = state["m"], state["v"], work[: 1 + k], work[1 + k :]
            torch.lerp(g.expand_as(m), m, beta, out=m)
            torch.lerp(torch.mul(g, g, out=tmp), v, self.beta2, out=v)
            inv_d = torch.mul(v, 1 / (1 - self.beta2**t), out=tmp)
        inv_d.sqrt_().add_(self.eps).reciprocal_()                      # 1 / (√v̂ + ε)
        torch.mul(g, inv_d, out=x[:1])
        torch.mul(m, inv_d, out=x[1:]).mul_(1 / (1 - beta**t))        # m̂ / (√v̂ + ε)
        return x, {"m": m, "v": v}

    def inputs(self, grad: Tensor, state: State, step: int) -> tuple[Tensor, State]:
        """The (num_inputs, N) inputs (moments, then the step features) and the new moments."""
        x, new_state = self.moments(grad, state, step)
        if len(self.steps):
            x = torch.cat((x, self.steps(step, x)))
        return x, new_state

    def update(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
               step: int = 0) -> tuple[Tensor, State]:
        if not torch.is_grad_enabled():
            new_state = {k: v.clone() for k, v in state.items()}
            return self.update_(grad, new_state, layout, loss, step).view_as(grad).clone(), new_state
        x, new_state = self.inputs(grad, state, step)
        h = x
        for w, b in zip(self.weights, self.biases):
            h = torch.relu(torch.addmm(b, w, h))
        out = torch.addmm(torch.addmm(self.out_bias, self.out_weight, h), self.skip, x)
        direction, magnitude = out[0], out[1]
        update = torch.tanh(direction) * torch.exp(torch.tanh(magnitude) * self.magnitude_range) * self._scale(step)
        return shrink_wide(update, layout, self.fan_in_ref).view_as(grad), new_state

    @torch.no_grad()
    def update_(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
                step: int = 0) -> Tensor:
        """The same update without autograd, for a step outside meta-training (`LearnedOptimizer`):
        the moments overwrite `state`, and every matmul is a plain `mm` into one reused work buffer. Its rows are
        [x (1 + K); 1; h_1; 1; ...; h_L; 1], so each layer reads [input; 1] and its bias is a
        column of the matrix:
        - the step features are the same for every coordinate: their columns fold into that
          bias column, so the matmuls read 1 + K + 1 rows, not 1 + K + len(time_scales) + bias;
        - `addmm` with a broadcast bias first copies the bias into the whole (hidden, N) output,
          which cost more than the matmul;
        - nothing model-sized is allocated (the buffer is sized for the largest piece and viewed
          for smaller ones): large blocks that the allocator returns to the system fault in
          fresh pages on every call, which cost more than the arithmetic on a 1M-parameter model.
        The update returned is a view of the buffer."""
        n, k = grad.numel(), len(self.betas)
        sizes = [1 + k, *self.hidden]
        work, out = self._work_views(n, sum(sizes) + len(sizes), grad)   # [x; 1; h_1; 1; ...; h_L; 1]
        x, _ = self.moments(grad, state, step, work=work[: 2 + k])
        s = self.steps(step, x[:, :1]) if len(self.steps) else None    # (len, 1): the same for every coordinate
        row = 0
        for i, (size, fan_out) in enumerate(zip(sizes, [*self.hidden, None])):
            block = work[row : row + size + 1]                             # [input; 1]
            block[size].fill_(1.0)
            if fan_out is None:                                            # the output layer
                break
            weight, bias = self.weights[i], self.biases[i]
            if i == 0:
                bias = bias if s is None else torch.addmm(bias, weight[:, size:], s)
                weight = weight[:, :size]
            torch.mm(torch.cat((weight, bias), 1), block, out=work[row + size + 1 : row + size + 1 + fan_out]).relu_()
            row += size + 1
        skip_x, bias = self.skip[:, : 1 + k], self.out_bias
        if s is not None:
            bias = torch.addmm(bias, self.skip[:, 1 + k :], s)
        if self.hidden:
            torch.mm(torch.cat((self.out_weight, bias), 1), block, out=out).addmm_(skip_x, x)
        else:                                                              # out = (W + S) x + b: one matmul
            if s is not None:
                bias = torch.addmm(bias, self.out_weight[:, 1 + k :], s)
            torch.mm(torch.cat((self.out_weight[:, : 1 + k] + skip_x, bias), 1), block, out=out)
        direction, magnitude = out[0], out[1]
        magnitude.tanh_().mul_(self.magnitude_range).exp_().mul_(self._scale(step))
        shrink_wide(magnitude, layout, self.fan_in_ref, in_place=True)
        return direction.tanh_().mul_(magnitude)

    def _work_views(self, n: int, rows: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """(rows, n) and (2, n) views of work buffers kept for the largest n seen."""
        key = (like.dtype, like.device)
        if getattr(self, "_work_key", None) != key or self._work.numel() < (rows + 2) * n:
            self._work_key = key
            self._work = like.new_empty((rows + 2) * n)
        return self._work[: rows * n].view(rows, n), self._work[rows * n : (rows + 2) * n].view(2, n)

