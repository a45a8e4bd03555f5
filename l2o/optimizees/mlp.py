"""An MLP classifier on an image dataset (the paper's MNIST experiments).

B instances differ in their initialisation and their minibatch stream; they run as one
tensor program with batched matmuls (`torch.baddbmm`), no Python loop over instances.

Data split (l2o.optimizees.classifier): problems with training or validation seeds draw
minibatches from training images [0, 50000); test problems draw from [50000, 60000). The full
test split (10,000 images) is only used to report test loss and accuracy of final parameters.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from l2o import checks
from l2o.errors import L2OError
from l2o.optimizees.base import OptimizeeState, ParamSpec
from l2o.optimizees.classifier import ClassifierFamily, check_widths

ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


class MLPClassifier(ClassifierFamily):
    """MLP `features -> hidden... -> classes` with `activation`, cross-entropy on minibatches of
    `batch_size`; weights and biases ~ N(0, init_std²) (the authors' code's initialisation)."""

    def __init__(
        self,
        dataset: Any,
        test_dataset: Any = None,
        hidden: Sequence[int] = (20,),
        activation: str = "sigmoid",
        batch_size: int = 128,
        init_std: float = 0.01,
        test_part_start: int | None = 50_000,
        labels: Sequence[int] | None = None,
    ):
        if activation not in ACTIVATIONS:
            raise L2OError(f"optimizee.activation={activation!r} is unknown; allowed: {', '.join(ACTIVATIONS)}.")
        hidden = list(hidden)
        check_widths("hidden", hidden, " (one width per hidden layer)")
        checks.number(init_std, "optimizee.init_std", at_least=0)
        super().__init__(dataset, test_dataset, batch_size, test_part_start, labels)
        self.activation, self.init_std = activation, float(init_std)
        widths = [self.x.shape[1], *hidden, self.num_classes]
        self.num_layers = len(widths) - 1
        # named and shaped as nn.Sequential(Linear, act, Linear, ...) names its parameters, so a
        # user's equivalent torch model has exactly this layout (l2o.layout)
        shapes: dict[str, tuple[int, ...]] = {}
        for layer, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            shapes[f"{2 * layer}.weight"] = (b, a)
            shapes[f"{2 * layer}.bias"] = (b,)
        kinds = {name: "linear_weight" if name.endswith("weight") else "linear_bias" for name in shapes}
        self.spec = ParamSpec(shapes, kinds)

    def prepare(self, images: Tensor) -> Tensor:
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        return x.reshape(x.shape[0], -1)

    def init_theta(self, gen: torch.Generator) -> Tensor:
        return torch.randn(self.spec.numel, generator=gen) * self.init_std

    def logits(self, p: dict[str, Tensor], x: Tensor, state: OptimizeeState, train: bool) -> tuple[Tensor, OptimizeeState]:
        h = x
        act = ACTIVATIONS[self.activation]
        for layer in range(self.num_layers):
            h = torch.baddbmm(p[f"{2 * layer}.bias"].unsqueeze(1), h, p[f"{2 * layer}.weight"].transpose(1, 2))
            if layer < self.num_layers - 1:
                h = act(h)
        return h, state
