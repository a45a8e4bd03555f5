"""An MLP classifier on an image dataset (the paper's MNIST experiments).

B instances differ in their initialisation and their minibatch stream; they run as one
tensor program with batched matmuls (`torch.baddbmm`), no Python loop over instances.

Data split: problems with training or validation seeds draw minibatches from training
images [0, 50000); test problems draw from [50000, 60000). The full test split (10,000
images) is only used to report test loss and accuracy of final parameters.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from l2o.data import verify_files
from l2o.errors import L2OError
from l2o.optimizees.base import SPLIT_OFFSETS, Family, ParamSpec, Problem, generator_for

ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


def _as_tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """(N, features) float images in [0, 1] and (N,) labels of a torchvision dataset."""
    if getattr(dataset, "root", None) is not None:
        verify_files(dataset.root)
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    if data is None or targets is None:
        raise L2OError(f"dataset {type(dataset).__name__} has no .data/.targets tensors (MNIST-like torchvision datasets do).")
    x = torch.as_tensor(data)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return x.reshape(x.shape[0], -1), torch.as_tensor(targets).long()


class MLPProblem(Problem):
    def __init__(self, family: "MLPClassifier", theta0: Tensor, perms: Tensor, offset: int):
        self.family, self.spec, self.theta0 = family, family.spec, theta0
        self.perms, self.offset = perms, offset  # (B, n) per-instance minibatch order within the data part
        self.num_problems = theta0.shape[0]

    def init_params(self) -> Tensor:
        return self.theta0.clone()

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Minibatch of every instance at `step`: x (B, batch, features), y (B, batch)."""
        fam = self.family
        n = self.perms.shape[1]
        cols = (torch.arange(fam.batch_size, device=self.perms.device) + step * fam.batch_size) % n
        idx = self.perms[:, cols] + self.offset
        return fam.x[idx], fam.y[idx]

    def logits(self, params: Tensor, x: Tensor) -> Tensor:
        p = self.spec.unflatten(params)
        h = x
        act = ACTIVATIONS[self.family.activation]
        for layer in range(self.family.num_layers):
            h = torch.baddbmm(p[f"{2 * layer}.bias"].unsqueeze(1), h, p[f"{2 * layer}.weight"].transpose(1, 2))
            if layer < self.family.num_layers - 1:
                h = act(h)
        return h

    def loss(self, params: Tensor, step: int) -> Tensor:
        x, y = self.batch(step)
        logits = self.logits(params, x)
        B, m, k = logits.shape
        return F.cross_entropy(logits.reshape(B * m, k), y.reshape(B * m), reduction="none").view(B, m).mean(1)

    @torch.no_grad()
    def test_metrics(self, params: Tensor, chunk: int = 8) -> dict[str, Tensor]:
        """Loss and accuracy of each instance's parameters on the full test split."""
        fam = self.family
        x, y = fam.x_test, fam.y_test
        losses, accs = [], []
        for start in range(0, params.shape[0], chunk):
            p = params[start : start + chunk]
            logits = self.logits(p, x.unsqueeze(0).expand(p.shape[0], *x.shape))
            losses.append(F.cross_entropy(logits.transpose(1, 2), y.expand(p.shape[0], -1), reduction="none").mean(1))
            accs.append((logits.argmax(-1) == y).float().mean(1))
        return {"test_loss": torch.cat(losses), "test_accuracy": torch.cat(accs)}


class MLPClassifier(Family):
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
        test_part_start: int = 50_000,
    ):
        if activation not in ACTIVATIONS:
            raise L2OError(f"optimizee.activation={activation!r} is unknown; allowed: {', '.join(ACTIVATIONS)}.")
        hidden = list(hidden)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise L2OError(f"optimizee.hidden={hidden!r} must be a list of positive integers (one width per hidden layer).")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise L2OError(f"optimizee.batch_size={batch_size!r} must be a positive integer.")
        if not isinstance(init_std, (int, float)) or init_std < 0:
            raise L2OError(f"optimizee.init_std={init_std!r} must be a number >= 0.")
        self.x, self.y = _as_tensors(dataset)
        if not 0 < test_part_start < self.x.shape[0]:
            raise L2OError(f"optimizee.test_part_start={test_part_start} must lie inside the {self.x.shape[0]} training images.")
        self.x_test, self.y_test = _as_tensors(test_dataset) if test_dataset is not None else (None, None)
        self.activation, self.batch_size, self.init_std = activation, batch_size, float(init_std)
        self.test_part_start = test_part_start
        widths = [self.x.shape[1], *hidden, int(self.y.max()) + 1]
        self.num_layers = len(widths) - 1
        # named and shaped as nn.Sequential(Linear, act, Linear, ...) names its parameters, so a
        # user's equivalent torch model has exactly this layout (l2o.layout)
        shapes: dict[str, tuple[int, ...]] = {}
        for layer, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            shapes[f"{2 * layer}.weight"] = (b, a)
            shapes[f"{2 * layer}.bias"] = (b,)
        kinds = {name: "linear_weight" if name.endswith("weight") else "linear_bias" for name in shapes}
        self.spec = ParamSpec(shapes, kinds)
        self._device = torch.device("cpu")

    def to(self, device: torch.device | str) -> "MLPClassifier":
        device = torch.device(device)
        if device != self._device:
            self.x, self.y = self.x.to(device), self.y.to(device)
            if self.x_test is not None:
                self.x_test, self.y_test = self.x_test.to(device), self.y_test.to(device)
            self._device = device
        return self

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> MLPProblem:
        self.to(device)
        test = all(s >= SPLIT_OFFSETS["test"] for s in seeds)
        if not test and any(s >= SPLIT_OFFSETS["test"] for s in seeds):
            raise ValueError("a batch mixes test seeds with training/validation seeds")
        lo, hi = (self.test_part_start, self.x.shape[0]) if test else (0, self.test_part_start)
        thetas, perms = [], []
        for seed in seeds:
            gen = generator_for(seed)
            thetas.append(torch.randn(self.spec.numel, generator=gen) * self.init_std)
            perms.append(torch.randperm(hi - lo, generator=gen))
        return MLPProblem(self, torch.stack(thetas).to(device), torch.stack(perms).to(device), lo)
