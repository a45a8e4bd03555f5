"""What the image-classifier optimizees (the MNIST MLP, the CIFAR CNN) share: a dataset turned
into tensors once, an optional label subset, seeded minibatch streams per instance, the split of
training images between training/validation problems and test problems, and test-set metrics.

A subclass says how images become network inputs (`prepare`), what the parameters are
(`spec`, `init_theta`) and how B instances compute their logits (`logits`).
"""
from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from l2o.data import verify_files
from l2o import checks
from l2o.errors import L2OError
from l2o.optimizees.base import SPLIT_OFFSETS, Family, OptimizeeState, ParamSpec, Problem, generator_for, select_instances


def dataset_tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """Images as stored by a torchvision-style dataset (`.data`: (N, H, W) or (N, H, W, C)) and
    (N,) labels."""
    if getattr(dataset, "root", None) is not None:
        verify_files(dataset.root)
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    if data is None or targets is None:
        raise L2OError(f"dataset {type(dataset).__name__} has no .data/.targets (torchvision's MNIST and CIFAR10 "
                       "datasets, and l2o.datasets.CIFAR10Subset, have them).")
    return torch.as_tensor(data), torch.as_tensor(targets).long()


def check_widths(key: str, widths: Sequence[int], hint: str = "") -> None:
    """`optimizee.<key>` must be a list of positive integers (layer widths)."""
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise L2OError(f"optimizee.{key}={list(widths)!r} must be a list of positive integers{hint}.")


def label_subset(x: Tensor, y: Tensor, labels: Sequence[int] | None) -> tuple[Tensor, Tensor]:
    """Only the images of `labels`, relabelled 0..k-1 in the order given (CIFAR-k)."""
    if labels is None:
        return x, y
    remap = torch.full((int(max(int(y.max()), *labels)) + 1,), -1, dtype=torch.long)
    remap[torch.as_tensor(list(labels))] = torch.arange(len(labels))
    keep = remap[y] >= 0
    return x[keep], remap[y[keep]]


class ClassifierProblem(Problem):
    has_test_metrics = True

    def __init__(self, family: "ClassifierFamily", theta0: Tensor, perms: Tensor, offset: int):
        self.family, self.spec, self.theta0 = family, family.spec, theta0
        self.perms, self.offset = perms, offset  # (B, n) per-instance minibatch order within the data part
        self.num_problems = theta0.shape[0]

    def init_params(self) -> Tensor:
        return self.theta0.clone()

    def init_state(self) -> OptimizeeState:
        return self.family.init_state(self.num_problems, self.theta0.device)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Minibatch of every instance at `step`: x (B, batch, *input shape), y (B, batch)."""
        fam = self.family
        n = self.perms.shape[1]
        cols = (torch.arange(fam.batch_size, device=self.perms.device) + step * fam.batch_size) % n
        idx = self.perms[:, cols] + self.offset
        return fam.x[idx], fam.y[idx]

    def evaluate(self, params: Tensor, step: int, state: OptimizeeState) -> tuple[Tensor, OptimizeeState]:
        x, y = self.batch(step)
        logits, state = self.family.logits(self.spec.unflatten(params), x, state, train=True)
        B, m, k = logits.shape
        return F.cross_entropy(logits.reshape(B * m, k), y.reshape(B * m), reduction="none").view(B, m).mean(1), state

    def logits(self, params: Tensor, x: Tensor, state: OptimizeeState = None) -> Tensor:
        """Logits of inputs x (B, m, ...) in evaluation mode (batch norm on its running statistics)."""
        return self.family.logits(self.spec.unflatten(params), x, state, train=False)[0]

    @torch.no_grad()
    def test_metrics(self, params: Tensor, state: OptimizeeState = None, chunk: int = 8,
                     images: int = 500) -> dict[str, Tensor]:
        """Each instance's metrics (`test_sums`, averaged over images) on the test split, `chunk`
        instances by `images` test images at a time: in evaluation mode every image is scored
        alone, and all 10,000 CIFAR-10 test images at once would take gigabytes per instance."""
        x, y = self.family.x_test, self.family.y_test
        parts: dict[str, list[Tensor]] = {}
        for start in range(0, params.shape[0], chunk):
            p = params[start : start + chunk]
            rows = torch.arange(start, start + p.shape[0], device=params.device)
            st = select_instances(state, rows)
            totals: dict[str, Tensor] = {}
            for first in range(0, x.shape[0], images):
                xb, yb = x[first : first + images], y[first : first + images]
                out = self.logits(p, xb.unsqueeze(0).expand(p.shape[0], *xb.shape), st)
                for name, value in self.test_sums(out, xb, yb).items():
                    totals[name] = totals[name] + value if name in totals else value
            for name, value in totals.items():
                parts.setdefault(name, []).append(value / x.shape[0])
        return {name: torch.cat(values) for name, values in parts.items()}

    def test_sums(self, logits: Tensor, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """{metric: (b,) sum over the images} of b instances' outputs (b, images, ...) on test images x, labels y."""
        return {"test_loss": F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1), reduction="none").sum(1),
                "test_accuracy": (logits.argmax(-1) == y).float().sum(1)}


def torch_nn_init(spec: ParamSpec, gen: torch.Generator) -> Tensor:
    """θ0 of one instance as torch.nn initialises the equivalent model: weights and biases uniform in
    ±1/√fan_in of their layer's weight (fan-in: its dims 1.., conv, transposed conv or linear),
    batch-norm scales 1 and shifts 0; drawn from `gen` tensor by tensor, in the spec's order."""
    parts = []
    for name, shape in spec.shapes.items():
        kind = spec.kinds[name]
        if kind in ("norm_scale", "norm_shift"):
            parts.append(torch.full(shape, 1.0 if kind == "norm_scale" else 0.0))
            continue
        weight_shape = spec.shapes[name.rsplit(".", 1)[0] + ".weight"]
        bound = 1.0 / math.sqrt(math.prod(weight_shape[1:]))
        parts.append(torch.rand(shape, generator=gen).mul_(2 * bound).sub_(bound))
    return torch.cat([p.reshape(-1) for p in parts])


class ClassifierFamily(Family):
    """Problems: a fresh network (seeded θ0) trained with cross-entropy on seeded minibatches of
    `batch_size` from the training images. Training and validation problems draw from images
    [0, test_part_start), test problems from [test_part_start, N); with `test_part_start=None`
    all problems draw from all N images and differ only in θ0 and minibatch order (the paper's
    protocol; for small datasets). The test dataset only serves the final test loss and
    accuracy. `labels` keeps only those classes (CIFAR-k)."""

    problem_class: type[ClassifierProblem] = ClassifierProblem   # what `sample` returns: its loss and test metrics

    def __init__(self, dataset: Any, test_dataset: Any = None, batch_size: int = 128,
                 test_part_start: int | None = None, labels: Sequence[int] | None = None):
        checks.integer(batch_size, "optimizee.batch_size")
        x, y = dataset_tensors(dataset)
        if labels is not None:
            labels = [int(v) for v in labels]
            if len(set(labels)) != len(labels) or len(labels) < 2 or min(labels) < 0 or max(labels) > int(y.max()):
                raise L2OError(f"optimizee.labels={labels!r} must be at least 2 distinct labels of the dataset "
                               f"(0..{int(y.max())}).")
        self.labels = labels
        x, self.y = label_subset(x, y, labels)
        self.x = self.prepare(x)
        if test_part_start is not None and not 0 < test_part_start < self.x.shape[0]:
            raise L2OError(f"optimizee.test_part_start={test_part_start} must lie inside the {self.x.shape[0]} training images.")
        if test_part_start is not None and bool((self.y[1:] >= self.y[:-1]).all()) and len(self.y.unique()) > 1:
            before, after = self.y[:test_part_start].unique().tolist(), self.y[test_part_start:].unique().tolist()
            raise L2OError(f"optimizee.test_part_start={test_part_start}: the training images are ordered by class (as "
                           f"an image folder is), so training problems would see only classes {before} and test "
                           f"problems only {after}. Use test_part_start=null (problems differ by θ0 and minibatch "
                           f"order, the paper's protocol) or a dataset in random order.")
        self.test_part_start = test_part_start
        self.x_test, self.y_test = None, None
        if test_dataset is not None:
            xt, self.y_test = label_subset(*dataset_tensors(test_dataset), labels)
            self.x_test = self.prepare(xt)
        self.batch_size = batch_size
        self.num_classes = int(self.y.max()) + 1
        self._device = torch.device("cpu")

    @abstractmethod
    def prepare(self, images: Tensor) -> Tensor:
        """Dataset images (as stored) -> float network inputs, one row per image."""

    @abstractmethod
    def init_theta(self, gen: torch.Generator) -> Tensor:
        """θ0 of one instance, (D,), from its seeded generator."""

    @abstractmethod
    def logits(self, p: dict[str, Tensor], x: Tensor, state: OptimizeeState, train: bool) -> tuple[Tensor, OptimizeeState]:
        """Logits (B, m, k) of B instances (named (B, *shape) parameters) on inputs (B, m, ...),
        and the next optimizee state."""

    def init_state(self, num_problems: int, device: torch.device) -> OptimizeeState:
        return None

    def to(self, device: torch.device | str) -> "ClassifierFamily":
        device = torch.device(device)
        if device != self._device:
            self.x, self.y = self.x.to(device), self.y.to(device)
            if self.x_test is not None:
                self.x_test, self.y_test = self.x_test.to(device), self.y_test.to(device)
            self._device = device
        return self

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> ClassifierProblem:
        self.to(device)
        test = all(s >= SPLIT_OFFSETS["test"] for s in seeds)
        if not test and any(s >= SPLIT_OFFSETS["test"] for s in seeds):
            raise ValueError("a batch mixes test seeds with training/validation seeds")
        n, split = self.x.shape[0], self.test_part_start
        lo, hi = (0, n) if split is None else (split, n) if test else (0, split)
        thetas, perms = [], []
        for seed in seeds:
            gen = generator_for(seed)
            thetas.append(self.init_theta(gen))
            perms.append(torch.randperm(hi - lo, generator=gen))
        return self.problem_class(self, torch.stack(thetas).to(device), torch.stack(perms).to(device), lo)
