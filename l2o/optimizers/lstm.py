"""The paper's coordinatewise LSTM optimizer m(∇, h; φ).

Every coordinate of every parameter of every problem instance is one column of a
(features, N) matrix: φ is shared, each column has its own hidden and cell state.
State is stored feature-major, (hidden, N), so each gate block of the (4H, N) gate
matrix is contiguous (PERF-NOTES: 3-6x faster elementwise kernels than (N, 4H)).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2o import checks
from l2o.layout import Layout
from l2o.optimizers.base import OptimizerNet, State
from l2o.optimizers.parts import MIRROR, StepFeatures, mirrored, odd_update
from l2o.optimizers.preprocess import preprocess

__all__ = ["CoordinatewiseLSTM", "MIRROR", "lstm_cell", "lstm_layer"]


def lstm_cell(pre: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The elementwise part of a layer: gate pre-activations (4H, n), rows (i, f, o, g) with the
    cell-input rows g already doubled, and the cell state c (H, n) -> new (h, c).

    tanh(a) is computed as 2·σ(2a) − 1: on the CPU build measured here torch's tanh kernel
    was 3-9× slower than its sigmoid (e.g. 593 µs against 184 µs on 20 × 15,910 floats), so all
    four gates are one sigmoid over the contiguous (4H, n) block.
    """
    i, f, o, g = pre.sigmoid().chunk(4, 0)
    c = torch.addcmul(f * c, i, 2.0 * g - 1.0)
    return o * (2.0 * torch.sigmoid(2.0 * c) - 1.0), c


def doubled_cell_rows(weight: Tensor) -> Tensor:
    """`weight` with its cell-input (g) rows times 2, the factor `lstm_cell` expects."""
    H = weight.shape[0] // 4
    scale = torch.ones(4 * H, 1, dtype=weight.dtype, device=weight.device)
    scale[3 * H :] = 2.0
    return weight * scale


def lstm_layer(weight: Tensor, x: Tensor, h: Tensor, c: Tensor, ones: Tensor) -> tuple[Tensor, Tensor]:
    """One layer for all N coordinates: gates (i, f, o, g) = W @ [h; x; 1] in one matmul, then
    `lstm_cell`."""
    return lstm_cell(doubled_cell_rows(weight) @ torch.cat((h, x, ones)), c)


class CoordinatewiseLSTM(OptimizerNet):
    """`num_layers` LSTM layers of `hidden_size` units, then a linear map to one output
    per coordinate, times `output_scale`. `num_layers=0` is the linear coordinatewise net
    of the authors' CI check. `preprocess_p=None` feeds the raw gradient.

    Two parts of `l2o.optimizers.parts`, for this class and every subclass (LSTM+GAC, RNNprop,
    AdamLSTM): `odd=True` runs the net as an odd function of the gradient history (`odd_update`;
    on MNIST a plain net's biases move the 15% of coordinates that never get a gradient every
    step), `time_scales=[τ1, ...]` adds the step features tanh(t/τ − 1) to the first layer's
    inputs (`StepFeatures`); a φ trained without them starts a run with them (`init=`) unchanged.

    A subclass whose `mix` shares information between coordinates must declare
    `coordinatewise = False` (LSTM+GAC does): the chunked no-grad path is for coordinatewise nets.

    State: `h<l>`, `c<l>` of layer l, each (hidden, N) (`stream_state`); with `odd`, the same again
    under `mirror.` for the negated stream."""

    NAME = "lstm"
    coordinatewise = True

    def __init__(
        self,
        hidden_size: int = 20,
        num_layers: int = 2,
        preprocess_p: float | None = None,
        output_scale: float = 1.0,
        odd: bool = False,
        time_scales: Sequence[float] | None = None,
    ):
        super().__init__()
        self.odd = checks.flag(odd, "optimizer.odd")
        checks.integer(num_layers, "optimizer.num_layers", low=0, note=" (0: a linear coordinatewise net)")
        checks.integer(hidden_size, "optimizer.hidden_size")
        checks.number(preprocess_p, "optimizer.preprocess_p", above=0, allow_none=True, note=" (null: no preprocessing)")
        self.hidden_size, self.num_layers = int(hidden_size), int(num_layers)
        self.preprocess_p = None if preprocess_p is None else float(preprocess_p)
        self.output_scale = float(output_scale)
        self.step_features = StepFeatures(time_scales)
        in_features = (1 if self.preprocess_p is None else 2) + len(self.step_features)

        # One fused matrix per layer: gates (i, f, o, g) = W @ [h; x; 1], so a layer is one
        # matmul and the three sigmoid gates are one contiguous block.
        self.weights = nn.ParameterList()
        fan_in = in_features
        for _ in range(self.num_layers):
            self.weights.append(self.layer_weight(fan_in))
            fan_in = self.hidden_size
        # Zero output layer: the untrained optimizer starts by not moving θ, so early
        # meta-training never blows up the optimizee (the authors' code does the same for
        # its linear net).
        self.out_weight = nn.Parameter(torch.zeros(1, fan_in))
        self.out_bias = nn.Parameter(torch.zeros(1, 1))
        self._layer, self._cell = lstm_layer, lstm_cell
        # Without a meta-gradient (evaluation, LearnedOptimizer) coordinates are processed in
        # chunks of this many columns: the (4H, chunk) gate block stays in cache and memory does
        # not grow with the model (a 1.2M-parameter CNN needs a 384 MB gate tensor unchunked).
        self.chunk_size = 16384

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.coordinatewise and cls.mix is not CoordinatewiseLSTM.mix:
            raise TypeError(f"{cls.__name__} overrides mix(), which shares information between coordinates: "
                            "declare coordinatewise = False")

    @property
    def time_scales(self) -> tuple[float, ...]:
        return self.step_features.scales

    def layer_weight(self, fan_in: int) -> nn.Parameter:
        """A fresh (4H, H + fan_in + 1) layer matrix, torch.nn.LSTM's U(-1/√H, 1/√H) init."""
        H = self.hidden_size
        bound = 1.0 / math.sqrt(H)
        return nn.Parameter(torch.empty(4 * H, H + fan_in + 1).uniform_(-bound, bound))

    def compile_layers(self, enable: bool = True) -> "CoordinatewiseLSTM":
        """Run each layer through `torch.compile`, which fuses its elementwise work into a few
        kernels (forward and backward). Results equal the eager path to float tolerance."""
        self._layer = torch.compile(lstm_layer, dynamic=True) if enable else lstm_layer
        self._cell = torch.compile(lstm_cell, dynamic=True) if enable else lstm_cell
        self.compiled = enable
        return self

    def config(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "preprocess_p": self.preprocess_p,
            "output_scale": self.output_scale,
            "odd": self.odd,
            "time_scales": self.step_features.config(),
        }

    def init_free_fields(self, config: dict[str, Any]) -> set[str]:
        """`odd` uses the same φ differently, so a φ trained without it may start a run with it (and
        back); a φ without `time_scales` may start a run with them (`adapt_state_dict`)."""
        return {"odd"} | ({"time_scales"} if not config.get("time_scales") else set())

    def adapt_state_dict(self, state_dict: dict[str, Tensor], config: dict[str, Any]) -> dict[str, Tensor]:
        """A φ saved with architecture `config`, fitted to this net where they differ only in
        `time_scales` added here: the new inputs' columns of the first layer start at zero, so the
        net computes exactly what the stored φ did until meta-training moves them."""
        if config.get("time_scales") or not self.time_scales or not self.num_layers:
            return state_dict
        state_dict = dict(state_dict)
        state_dict["weights.0"] = StepFeatures.widen_first_layer(state_dict["weights.0"], len(self.time_scales))
        return state_dict

    def init_state(self, layout: Layout, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> State:
        state = self.stream_state(layout, device or self.out_weight.device, dtype or self.out_weight.dtype)
        return mirrored(state) if self.odd else state

    def stream_state(self, layout: Layout, device: torch.device | str, dtype: torch.dtype) -> State:
        """The state of one stream of gradients (`odd` keeps two): each layer's h and c. Subclasses
        with more state per coordinate (RNNprop's moments) add theirs here."""
        return {f"{k}{layer}": torch.zeros(self.hidden_size, layout.size, device=device, dtype=dtype)
                for layer in range(self.num_layers) for k in ("h", "c")}

    def features(self, grad: Tensor, state: State, layout: Layout) -> tuple[Tensor, State]:
        """The network's input features (features, N) and the state they need; here the
        preprocessed gradient. Subclasses with other inputs (RNNprop) override this."""
        return preprocess(grad, self.preprocess_p), {}

    def mix(self, h: Tensor, layer: int, layout: Layout) -> Tensor:
        """Hook between a layer's output and its use (next layer and recurrence): identity here,
        the global averaging cells of LSTM+GAC."""
        return h

    def head(self, x: Tensor) -> Tensor:
        """The last layer's (hidden, N) output to the head's (rows, N) outputs; here one row,
        the update itself."""
        return torch.addmm(self.out_bias, self.out_weight, x) * self.output_scale

    def output(self, out: Tensor, state: State) -> Tensor:
        """The head's (rows, N) outputs and the new state to the (N,) update: the one row here;
        architectures whose head emits several numbers per coordinate (AdamLSTM) combine them."""
        return out.reshape(-1)

    def update(self, grad: Tensor, state: State, layout: Layout, loss: Tensor | None = None,
               step: int = 0) -> tuple[Tensor, State]:
        """Updates g (same shape as `grad`) and the next state, for all coordinates at once."""
        if not self.odd:
            return self._stream(grad, state, layout, step)
        return odd_update(lambda g, s: self._stream(g, s, layout, step), grad, state)

    def _stream(self, grad: Tensor, state: State, layout: Layout, step: int) -> tuple[Tensor, State]:
        """The net's output and next state for one stream of gradients."""
        x, new_state = self.features(grad.reshape(-1), state, layout)
        if self.time_scales:
            x = torch.cat((x, self.step_features(step, x)))
        if not torch.is_grad_enabled() and self.coordinatewise:
            out = self._update_chunked(x, state, new_state)
            return self.output(out, new_state).reshape(grad.shape), new_state
        ones = x.new_ones(1, x.shape[1])
        for layer in range(self.num_layers):
            h, c = self._layer(self.weights[layer], x, state[f"h{layer}"], state[f"c{layer}"], ones)
            h = self.mix(h, layer, layout)
            new_state[f"h{layer}"], new_state[f"c{layer}"] = h, c
            x = h
        return self.output(self.head(x), new_state).reshape(grad.shape), new_state

    def _update_chunked(self, x: Tensor, state: State, new_state: State) -> Tensor:
        """The head's (rows, N) outputs without autograd, `chunk_size` coordinates at a time (all
        layers and the head on one chunk before the next), writing into preallocated outputs. Only for
        coordinatewise nets: a `mix` across coordinates (GAC) needs whole layers."""
        N = x.shape[1]
        weights = [doubled_cell_rows(w) for w in self.weights]
        weights = [(w[:, :-1], w[:, -1:]) for w in weights]
        chunk = max(1, int(self.chunk_size))
        whole = N <= chunk  # one chunk: its results are the new state, nothing to copy
        if not whole:
            for layer in range(self.num_layers):
                for k in ("h", "c"):
                    new_state[f"{k}{layer}"] = torch.empty_like(state[f"{k}{layer}"])
            out = x.new_empty(self.out_weight.shape[0], N)
        for s in range(0, N, chunk):
            cols = slice(s, min(N, s + chunk))
            inp = x[:, cols]
            for layer, (w, b) in enumerate(weights):
                h, c = self._cell(torch.addmm(b, w, torch.cat((state[f"h{layer}"][:, cols], inp))),
                                  state[f"c{layer}"][:, cols])
                if whole:
                    new_state[f"h{layer}"], new_state[f"c{layer}"] = h, c
                else:
                    new_state[f"h{layer}"][:, cols] = h
                    new_state[f"c{layer}"][:, cols] = c
                inp = h
            if whole:
                return self.head(inp)
            out[:, cols] = self.head(inp)
        return out
