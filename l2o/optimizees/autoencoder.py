"""A convolutional autoencoder on an image dataset: a regression loss (mean squared error of a
sigmoid reconstruction) and transposed convolutions, which no classifier family has.

It is here for the general optimizer's training mix. An MNIST conv autoencoder trained with the
`general` optimizer meta-trained only on classifiers collapsed at its default step to the all-black
image (loss 0.11, Adam at lr 1e-3: 0.004): sustained large early steps drove the sigmoid's input
far negative, where no gradient comes back. A general optimizer must have met such a landscape.

Encoder: stride-2 3×3 convolutions with ReLU; decoder: stride-2 4×4 transposed convolutions with
ReLU, the last one into a sigmoid. B instances run as grouped (transposed) convolutions
(groups = B), as `l2o.optimizees.cnn` does. Data splits and minibatch streams are the classifier
families' (`l2o.optimizees.classifier`); labels are not used.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2o.errors import L2OError
from l2o.optimizees.base import OptimizeeState, ParamSpec
from l2o.optimizees.classifier import ClassifierFamily, ClassifierProblem, check_widths, torch_nn_init


class ReconstructionProblem(ClassifierProblem):
    """Loss: per-instance mean squared error between each minibatch image and its reconstruction."""

    def evaluate(self, params: Tensor, step: int, state: OptimizeeState) -> tuple[Tensor, OptimizeeState]:
        x, _ = self.batch(step)
        out, state = self.family.logits(self.spec.unflatten(params), x, state, train=True)
        return (out - x).pow(2).flatten(1).mean(1), state

    def test_sums(self, logits: Tensor, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Reconstruction error only: nothing is classified."""
        return {"test_loss": (logits - x).pow(2).flatten(2).mean(2).sum(1)}


class ConvAutoencoder(ClassifierFamily):
    """`channels` encoder widths (each a 3×3 stride-2 convolution + ReLU), mirrored by 4×4 stride-2
    transposed convolutions back to the image; sigmoid output, mean squared error. θ0: torch.nn's
    default initialisation of `torch_model()` (uniform ±1/√fan_in, with a transposed convolution's
    fan-in as torch computes it), drawn from each instance's seed."""

    problem_class = ReconstructionProblem

    def __init__(self, dataset: Any, test_dataset: Any = None, channels: Sequence[int] = (8, 16),
                 batch_size: int = 64, test_part_start: int | None = 50_000):
        check_widths("channels", channels)
        super().__init__(dataset, test_dataset, batch_size, test_part_start)
        self.channels = list(channels)
        c_img, size = self.x.shape[1], self.x.shape[2]
        if size % (2 ** len(self.channels)):
            raise L2OError(f"images of {size}×{size} pixels can't be halved {len(self.channels)} times.")
        self.layers: list[tuple[str, bool, int, int]] = []   # (module index, transposed, c_in, c_out)
        widths = [c_img, *self.channels]
        for a, b in zip(widths[:-1], widths[1:]):
            self.layers.append((str(2 * len(self.layers)), False, a, b))
        for a, b in zip(widths[::-1][:-1], widths[::-1][1:]):
            self.layers.append((str(2 * len(self.layers)), True, a, b))
        shapes: dict[str, tuple[int, ...]] = {}
        for name, transposed, a, b in self.layers:
            shapes[f"{name}.weight"] = (a, b, 4, 4) if transposed else (b, a, 3, 3)   # torch.nn's layouts
            shapes[f"{name}.bias"] = (b,)
        self.spec = ParamSpec(shapes, {n: "conv_weight" if n.endswith("weight") else "conv_bias" for n in shapes})

    def prepare(self, images: Tensor) -> Tensor:
        """(N, H, W) grey or (N, H, W, C) / (N, C, H, W) colour images -> floats in [0, 1], (N, C, H, W)."""
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        if x.ndim == 3:
            return x.unsqueeze(1).contiguous()
        return (x.permute(0, 3, 1, 2) if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3) else x).contiguous()

    def torch_model(self) -> nn.Sequential:
        """The same network as torch.nn modules, with this family's parameter names."""
        layers: list[nn.Module] = []
        for _, transposed, a, b in self.layers:
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1) if transposed else nn.Conv2d(a, b, 3, 2, 1), nn.ReLU()]
        return nn.Sequential(*layers[:-1], nn.Sigmoid())

    def init_theta(self, gen: torch.Generator) -> Tensor:
        return torch_nn_init(self.spec, gen)

    def logits(self, p: dict[str, Tensor], x: Tensor, state: OptimizeeState, train: bool) -> tuple[Tensor, OptimizeeState]:
        """Reconstructions (B, m, C, H, W) of inputs (B, m, C, H, W)."""
        B, m = x.shape[:2]
        h = x.transpose(0, 1).reshape(m, B * x.shape[2], *x.shape[3:])   # instance i = channel group i
        for i, (name, transposed, _, _) in enumerate(self.layers):
            w, bias = p[f"{name}.weight"], p[f"{name}.bias"].reshape(-1)
            w = w.reshape(-1, *w.shape[2:])
            h = (F.conv_transpose2d(h, w, bias, stride=2, padding=1, groups=B) if transposed
                 else F.conv2d(h, w, bias, stride=2, padding=1, groups=B))
            h = torch.sigmoid(h) if i == len(self.layers) - 1 else F.relu(h)
        return h.reshape(m, B, *x.shape[2:]).transpose(0, 1), state
