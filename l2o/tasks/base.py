"""A task: a real model trained on real data by an ordinary PyTorch loop, the way a user would
train it, for judging an optimizer where it will be used. A task gives a model (from a seed),
minibatches (from a seeded generator), a loss, held-out metrics, a number of steps, and how the
parameters are grouped (weight decay, a learning-rate multiplier per group) and scheduled; `train`
is the one loop every optimizer, learned or not, runs through."""
from __future__ import annotations

import math
import statistics
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from l2o import checks
from l2o.errors import L2OError

# (param groups, model) -> optimizer: a baseline's factory at its lr, or LearnedOptimizer
MakeOptimizer = Callable[[list[dict[str, Any]], nn.Module], torch.optim.Optimizer]


@dataclass
class Trained:
    """One run: the training minibatch loss before each step and after the last (NaN from the step
    a run diverged on), the held-out metrics at the end, and what a step cost."""

    losses: Tensor                 # (steps + 1,)
    metrics: dict[str, float]      # test_loss, test_accuracy (NaN when diverged)
    step_ms: float                 # median wall time of optimizer.step()
    state_bytes_per_param: float   # optimizer state (tensors in opt.state) per model parameter


class Task(ABC):
    """`steps` optimizer steps on minibatches of `batch_size`. `weight_decay` applies to the weights
    only (not biases and norms: a second param group without it), `head_lr` multiplies the lr of the
    parameters whose names start with `head` (a third group); `scheduler` (a partial taking the
    optimizer, e.g. torch.optim.lr_scheduler.StepLR) is stepped after every step."""

    description = ""

    def __init__(self, steps: int = 300, batch_size: int = 64, weight_decay: float = 0.0, head: str | None = None,
                 head_lr: float = 1.0, scheduler: Callable[[torch.optim.Optimizer], Any] | None = None):
        self.steps = checks.integer(steps, "task.steps")
        self.batch_size = checks.integer(batch_size, "task.batch_size")
        self.weight_decay = checks.number(weight_decay, "task.weight_decay", at_least=0)
        self.head, self.head_lr = head, checks.number(head_lr, "task.head_lr", above=0)
        self.scheduler = scheduler

    @abstractmethod
    def model(self, seed: int) -> nn.Module:
        """A freshly initialised model (torch's init, seeded)."""

    @abstractmethod
    def batch(self, step: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """The training minibatch of `step` (inputs, targets), drawn with `gen`."""

    @abstractmethod
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The training loss of a minibatch (a scalar)."""

    @abstractmethod
    def test_metrics(self, model: nn.Module) -> dict[str, float]:
        """Loss (and accuracy, where it has one) on held-out data, the model in eval mode."""

    def check(self) -> None:
        """Build a model and take its loss on one minibatch, before any run is written: a model that
        does not build, or does not take the task's batches, is an error naming `task.model`, not a
        traceback from inside an evaluation. (A loss that is NaN is not an error: the runs report
        it as a divergence.)"""
        try:
            model = self.model(0)
            x, y = self.batch(0, torch.Generator().manual_seed(0))
            with torch.no_grad():
                loss = self.loss(model(x), y)
        except Exception as exc:
            raise L2OError(f"task.model: the task's model does not build or does not run on its minibatches "
                           f"({type(exc).__name__}: {exc}); check task.model (its _target_ and arguments).") from exc
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise L2OError(f"task: the loss must be a scalar tensor; got {type(loss).__name__} "
                           f"{tuple(loss.shape) if isinstance(loss, Tensor) else ''}")

    def param_groups(self, model: nn.Module, lr: float) -> list[dict[str, Any]]:
        """The model's parameters as the optimizer gets them: one group, or with `weight_decay` /
        `head` the weights with decay, the biases and norms without, the head at lr × head_lr."""
        if not self.weight_decay and self.head is None:
            return [{"params": list(model.parameters()), "lr": lr}]
        groups: dict[tuple[bool, bool], list[Tensor]] = {}
        for name, p in model.named_parameters():
            head = self.head is not None and name.startswith(self.head)
            decay = bool(self.weight_decay) and p.ndim > 1
            groups.setdefault((head, decay), []).append(p)
        return [{"params": params, "lr": lr * (self.head_lr if head else 1.0),
                 "weight_decay": self.weight_decay if decay else 0.0} for (head, decay), params in groups.items()]


def train(task: Task, make_optimizer: MakeOptimizer, seed: int, lr: float, steps: int | None = None,
          divergence_factor: float = 10.0) -> Trained:
    """The ordinary loop: zero_grad, loss, backward, step (and the task's scheduler), `steps` times
    (default the task's), on the model and minibatches of `seed`. A loss that is non-finite or above
    `divergence_factor` × the first one stops the run (the rest of the curve is NaN)."""
    steps = steps or task.steps
    torch.manual_seed(seed)
    model = task.model(seed)
    opt = make_optimizer(task.param_groups(model, lr), model)
    sched = task.scheduler(opt) if task.scheduler is not None else None
    gen = torch.Generator().manual_seed(seed)
    losses = torch.full((steps + 1,), math.nan, dtype=torch.float64)
    times: list[float] = []
    model.train()
    for t in range(steps + 1):
        x, y = task.batch(t, gen)
        if t == steps:   # the loss after the last step, as l2o-eval records f(θ_T)
            with torch.no_grad():
                losses[t] = task.loss(model(x), y).item()
            break
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model(x), y)
        losses[t] = loss.item()
        if not math.isfinite(losses[t]) or losses[t] > divergence_factor * abs(losses[0]):
            break
        loss.backward()
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
        if sched is not None:
            sched.step()
    diverged = not math.isfinite(float(losses[-1]))
    metrics = {"test_loss": math.nan, "test_accuracy": math.nan} if diverged else task.test_metrics(model.eval())
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if isinstance(v, Tensor))
    n = sum(p.numel() for p in model.parameters())
    return Trained(losses, metrics, 1000 * statistics.median(times) if times else math.nan, state / n)
