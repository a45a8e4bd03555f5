"""The task suite's two kinds of task: image classification (any torchvision-style dataset and any
model built from a `_target_`) and character-level language modelling on a text corpus."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2o import checks
from l2o.errors import L2OError
from l2o.optimizees.classifier import dataset_tensors
from l2o.tasks.base import Task


class ImageClassification(Task):
    """Cross-entropy on minibatches of the training images (normalised by their per-channel mean
    and std); test loss and accuracy on up to `test_limit` test images. `model` is a partial that
    takes `num_classes` (and `in_features` for an MLP: `flat=True`)."""

    def __init__(self, dataset: Any, test_dataset: Any, model: Callable[..., nn.Module], flat: bool = False,
                 test_limit: int | None = 2000, description: str = "", **task: Any):
        super().__init__(**task)
        x, y = dataset_tensors(dataset)
        xt, yt = dataset_tensors(test_dataset)
        self.x, self.y = _images(x), y
        mean, std = self.x.mean((0, 2, 3), keepdim=True), self.x.std((0, 2, 3), keepdim=True)
        self.x = (self.x - mean) / std
        limit = checks.integer(test_limit, "task.test_limit", allow_none=True) or len(yt)
        self.xt, self.yt = (_images(xt[:limit]) - mean) / std, yt[:limit]
        self.num_classes = int(max(self.y.max(), self.yt.max())) + 1
        self.flat, self.make_model, self.description = flat, model, description

    def model(self, seed: int) -> nn.Module:
        kwargs = {"in_features": self.x[0].numel()} if self.flat else {}
        return self.make_model(num_classes=self.num_classes, **kwargs)

    def batch(self, step: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randint(0, len(self.y), (self.batch_size,), generator=gen)
        return self.x[idx], self.y[idx]

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target)

    @torch.no_grad()
    def test_metrics(self, model: nn.Module) -> dict[str, float]:
        out = torch.cat([model(x) for x in self.xt.split(500)])
        return {"test_loss": F.cross_entropy(out, self.yt).item(), "test_accuracy": (out.argmax(1) == self.yt).float().mean().item()}


def _images(x: Tensor) -> Tensor:
    """(N, H, W) or (N, H, W, C) uint8 -> (N, C, H, W) floats in [0, 1]."""
    x = x.float() / 255
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def pydoc_corpus() -> str:
    """The help texts that ship with CPython (`pydoc_data.topics`, ~465,000 characters of English
    technical prose): a text corpus every Python install has."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


class CharLM(Task):
    """Next-character cross-entropy on windows of `seq_len` characters of `corpus` (its last
    `test_fraction` held out; test loss over up to `test_windows` windows of it, and accuracy as the
    share of characters predicted exactly). `corpus`: `pydoc` (the texts CPython ships) or a file."""

    def __init__(self, corpus: str = "pydoc", seq_len: int = 64, model: Callable[..., nn.Module] | None = None,
                 test_fraction: float = 0.1, test_windows: int = 64, description: str = "", **task: Any):
        super().__init__(**task)
        if corpus == "pydoc":
            text = pydoc_corpus()
        else:
            try:
                text = open(corpus, encoding="utf-8").read()
            except OSError as exc:
                raise L2OError(f"task.corpus={corpus!r}: {exc.strerror}; give `pydoc` or a UTF-8 text file.") from exc
        self.seq_len = checks.integer(seq_len, "task.seq_len")
        chars = sorted(set(text))
        codes = _encode(text, chars)
        cut = int(len(codes) * (1 - checks.number(test_fraction, "task.test_fraction", above=0, below=1)))
        if cut < self.seq_len + 1 or len(codes) - cut < self.seq_len + 1:
            raise L2OError(f"task.corpus={corpus!r} is too short for windows of {self.seq_len} characters.")
        self.train_codes, self.test_codes = codes[:cut], codes[cut:]
        self.vocab, self.test_windows = len(chars), checks.integer(test_windows, "task.test_windows")
        self.make_model, self.description = model, description

    def model(self, seed: int) -> nn.Module:
        return self.make_model(vocab=self.vocab)

    def _windows(self, codes: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        idx = starts[:, None] + torch.arange(self.seq_len + 1)
        w = codes[idx]
        return w[:, :-1], w[:, 1:]

    def batch(self, step: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        starts = torch.randint(0, len(self.train_codes) - self.seq_len - 1, (self.batch_size,), generator=gen)
        return self._windows(self.train_codes, starts)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))

    @torch.no_grad()
    def test_metrics(self, model: nn.Module) -> dict[str, float]:
        n = min(self.test_windows, (len(self.test_codes) - 1) // self.seq_len)
        x, y = self._windows(self.test_codes, torch.arange(n) * self.seq_len)
        out = model(x)
        loss = self.loss(out, y).item()
        return {"test_loss": loss, "test_accuracy": (out.argmax(-1) == y).float().mean().item(),
                "test_bits_per_char": loss / math.log(2)}


def _encode(text: str, chars: list[str]) -> Tensor:
    lookup = {c: i for i, c in enumerate(chars)}
    return torch.tensor([lookup[c] for c in text], dtype=torch.long)
