"""Frozen convolutional feature networks for the neural-art losses.

- `vgg19`: torchvision's VGG-19 `features` with its ImageNet weights, from a configured file or
  the torch hub cache (`download=true` lets torchvision fetch them, for users with internet).
- `random_vgg19`: the same layer layout with fixed seeded random weights (He-normal, zero
  bias). Random filters give usable texture statistics (Ustyuzhaninov et al. 2016, "Texture
  synthesis using shallow convolutional networks with random filters"); they are *not*
  ImageNet VGG-19, and every output that uses them says so.
- `random_shallow`: four random 3×3 conv layers (64, 128, 256, 256 channels) with pooling in
  between: about 6× cheaper than VGG-19 at the same resolution.
- `auto`: `vgg19` when its weights are found, else `random_vgg19`.

Layers are named by their convolution, Gatys-style (`conv4_2`), and give that convolution's
ReLU output. The network is cut after the deepest layer the losses use. Pooling is average
pooling by default, as Gatys et al. found it gives better gradients (`pool=max`: torchvision's).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from l2o.errors import L2OError

VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
SHALLOW_CFG = (64, "M", 128, "M", 256, "M", 256)
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
KINDS = ("auto", "vgg19", "random_vgg19", "random_shallow")
# (content, style) layers: Gatys et al.'s for ImageNet VGG-19; with random weights a deep content
# layer keeps too little of the image (from noise, matching conv4_2 to 5% left the picture
# unrecognisable; conv3_1 keeps it, checked by eye at 64×64)
DEFAULT_LAYERS = {
    "vgg19": (("conv4_2",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")),
    "random_vgg19": (("conv3_1",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")),
    "random_shallow": (("conv2_1",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1")),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_layers(cfg: Sequence[int | str], pool: str = "max") -> tuple[nn.Sequential, dict[str, int]]:
    """torchvision's VGG `features` layout for `cfg`, and the index of each named ReLU output."""
    layers: list[nn.Module] = []
    names: dict[str, int] = {}
    c_in, block, conv = 3, 1, 0
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2))
            block, conv = block + 1, 0
            continue
        conv += 1
        layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=False)]
        names[f"conv{block}_{conv}"] = len(layers) - 1
        c_in = int(v)
    return nn.Sequential(*layers), names


def cached_vgg19() -> Path | None:
    """torchvision's VGG-19 ImageNet weights in the torch hub cache, if there."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    return path if path.is_file() else None


def _features_state(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """A full torchvision VGG state dict (`features.N.weight`, `classifier...`) or a
    features-only one (`N.weight`) -> the features' own keys."""
    if any(k.startswith("features.") for k in weights):
        return {k[len("features."):]: v for k, v in weights.items() if k.startswith("features.")}
    return dict(weights)


class FeatureNet(nn.Module):
    """Frozen features at named layers; `forward(images in [0, 1])` -> {layer: (B, C, h, w)}.
    `description` names what the network is (recorded in checkpoints and evaluation results)."""

    def __init__(self, kind: str = "auto", weights: str | os.PathLike | None = None, download: bool = False,
                 seed: int = 0, content_layers: Sequence[str] | None = None,
                 style_layers: Sequence[str] | None = None, pool: str = "avg"):
        super().__init__()
        if kind not in KINDS:
            raise L2OError(f"optimizee.features.kind={kind!r} is unknown; allowed: {', '.join(KINDS)}.")
        if pool not in ("max", "avg"):
            raise L2OError(f"optimizee.features.pool={pool!r} must be 'max' or 'avg'.")
        if weights is not None and kind in ("random_vgg19", "random_shallow"):
            raise L2OError(f"optimizee.features.weights is set but kind={kind!r} uses random weights; "
                           "use kind=vgg19 (or auto) to load them.")
        source = Path(weights).expanduser() if weights is not None else None
        if source is not None and not source.is_file():
            raise L2OError(f"optimizee.features.weights={str(source)!r}: no such file (VGG-19 weights, a torchvision state dict).")
        if kind == "auto":
            source = source or cached_vgg19()
            kind = "vgg19" if source is not None or download else "random_vgg19"
        self.kind = kind
        layers, names = build_layers(SHALLOW_CFG if kind == "random_shallow" else VGG19_CFG, pool)
        default_content, default_style = DEFAULT_LAYERS[kind]
        self.content_layers = tuple(content_layers or default_content)
        self.style_layers = tuple(style_layers or default_style)
        unknown = [n for n in (*self.content_layers, *self.style_layers) if n not in names]
        if unknown:
            raise L2OError(f"optimizee.features: unknown layer(s) {unknown} for {kind}; it has {', '.join(names)}.")
        deepest = max(names[n] for n in (*self.content_layers, *self.style_layers))
        layers = layers[: deepest + 1]  # only what the losses use (and only its weights are needed)
        if kind == "vgg19":
            if source is None:
                source = cached_vgg19()
            if source is not None:
                state = torch.load(source, map_location="cpu", weights_only=True)
                where = str(source)
            elif download:
                from torchvision.models import VGG19_Weights

                state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
                where = "downloaded by torchvision"
            else:
                raise L2OError(f"optimizee.features.kind=vgg19, but its ImageNet weights are not in the torch cache "
                               f"({Path(torch.hub.get_dir()) / 'checkpoints' / VGG19_FILE}); set optimizee.features.weights=FILE, "
                               "or download=true with internet access, or kind=random_vgg19.")
            state = _features_state(state)
            needed = layers.state_dict()
            try:
                layers.load_state_dict({k: v for k, v in state.items() if k in needed})
            except RuntimeError as err:
                raise L2OError(f"optimizee.features.weights: {where} is not a VGG-19 state dict ({err}).") from err
            self.description = f"vgg19 (ImageNet weights, {where})"
        else:
            gen = torch.Generator().manual_seed(int(seed))
            with torch.no_grad():
                for m in layers:
                    if isinstance(m, nn.Conv2d):  # He-normal: ReLU activations keep their scale through depth
                        fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                        m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                        m.bias.zero_()
            self.description = f"{kind} (seeded random weights, seed {int(seed)}; not ImageNet VGG-19)"
        self.layers = layers
        self.outputs = {names[n]: n for n in dict.fromkeys((*self.content_layers, *self.style_layers))}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        h = (images - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i in self.outputs:
                out[self.outputs[i]] = h
        return out
