"""LSTM+GAC: the paper's coordinatewise LSTM with global averaging cells (Section 3.2).

In each LSTM layer the last `num_global` of the `hidden_size` cells are global averaging
cells (GACs). Exactly what is averaged, and where: after a layer has computed its new
hidden output h (hidden, N) for every coordinate, the rows of h that belong to GACs are
replaced by their mean over the coordinates of the same problem instance (the instance's
coordinates that this optimizer owns, when routed), and that averaged h is both what the
next layer (or the output layer) reads and the recurrent h stored in the state. The cell
states c stay per coordinate, and the other cells are untouched, so information flows
between coordinates only through the averaged cells and never between instances.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from l2o import checks
from l2o.layout import Layout
from l2o.optimizers.lstm import CoordinatewiseLSTM


class LSTMGAC(CoordinatewiseLSTM):
    """`CoordinatewiseLSTM` whose last `num_global` cells of every layer average over the instance."""

    NAME = "lstm_gac"
    coordinatewise = False  # the averaging cells read every coordinate of the instance

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, preprocess_p: float | None = 10.0,
                 output_scale: float = 0.1, num_global: int = 5, odd: bool = False,
                 time_scales: Sequence[float] | None = None):
        super().__init__(hidden_size, num_layers, preprocess_p, output_scale, odd, time_scales)
        self.num_global = checks.integer(num_global, "optimizer.num_global", low=0, high=self.hidden_size,
                                         note=" (at most hidden_size)")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "num_global": self.num_global}

    def mix(self, h: Tensor, layer: int, layout: Layout) -> Tensor:
        if self.num_global == 0:
            return h
        local, glob = h.split([self.hidden_size - self.num_global, self.num_global])
        B = layout.num_instances
        mean = glob.reshape(self.num_global, B, -1).mean(-1, keepdim=True)
        return torch.cat((local, mean.expand(-1, -1, glob.shape[1] // B).reshape_as(glob)))
