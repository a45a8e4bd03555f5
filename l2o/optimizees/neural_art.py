"""The paper's neural-art optimizee: Gatys-style stylisation, the image's pixels as parameters.

loss(x) = content_weight · Σ_l ‖F_l(x) − F_l(c)‖² / ‖F_l(c)‖²               (content layers)
        + style_weight   · mean_l ‖G_l(x) − G_l(s)‖² / ‖G_l(s)‖²           (style layers)
        + tv_weight      · (mean (x[i+1, j] − x[i, j])² + mean (x[i, j+1] − x[i, j])²)

with F_l a frozen feature network's activations (l2o.optimizees.features) and G_l = F_l F_lᵀ / hw
their Gram matrices. Each distance is relative to its target's size, so the weights mean the
same with ImageNet VGG-19 and with random-weight networks, whose activations differ in scale.

An instance is a content image, a seeded square crop (random side and position) of one image of
its split's list (training / validation / test seeds use disjoint image lists), resized to
`size`×`size`, the style image at the same size, and a seeded initial image (uniform noise, or
the content plus Gaussian noise). Pixels are free parameters in [0, 1] units (not clamped; shown
clamped). B instances go through the feature network as one batch.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from l2o import checks
from l2o.errors import L2OError
from l2o.images import load_images, square_crop
from l2o.optimizees.base import SPLIT_OFFSETS, Family, ParamSpec, Problem, generator_for
from l2o.optimizees.features import FeatureNet

INITS = ("noise", "content")


def gram(features: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, C, C) Gram matrices F Fᵀ / hw."""
    B, C = features.shape[:2]
    flat = features.reshape(B, C, -1)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def relative_sq_error(x: Tensor, target: Tensor) -> Tensor:
    """Per-instance ‖x − target‖² / ‖target‖² over all but the first axis."""
    dims = tuple(range(1, x.ndim))
    return (x - target).pow(2).sum(dims) / target.pow(2).sum(dims).clamp_min(1e-12)


def total_variation(images: Tensor) -> Tensor:
    """Per-image mean squared difference of vertically and of horizontally adjacent pixels (summed)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).pow(2).mean((1, 2, 3))
    dx = (images[..., :, 1:] - images[..., :, :-1]).pow(2).mean((1, 2, 3))
    return dy + dx


def split_of(seed: int) -> str:
    return "test" if seed >= SPLIT_OFFSETS["test"] else "val" if seed >= SPLIT_OFFSETS["val"] else "train"


class NeuralArtProblem(Problem):
    def __init__(self, family: "NeuralArt", content: Tensor, theta0: Tensor, names: list[str]):
        self.family, self.spec, self.content, self.theta0 = family, family.spec, content, theta0
        self.content_names = names  # which image each instance's crop came from
        self.num_problems = theta0.shape[0]
        with torch.no_grad():
            feats = family.net(content)
            self.content_targets = {l: feats[l] for l in family.net.content_layers}

    def init_params(self) -> Tensor:
        return self.theta0.clone()

    def images(self, params: Tensor) -> Tensor:
        """Parameters (B, D) as images (B, 3, size, size)."""
        return params.reshape(params.shape[0], 3, self.family.size, self.family.size)

    def loss(self, params: Tensor, step: int) -> Tensor:
        fam = self.family
        x = self.images(params)
        feats = fam.net(x)
        loss = fam.tv_weight * total_variation(x)
        for layer in fam.net.content_layers:
            loss = loss + fam.content_weight * relative_sq_error(feats[layer], self.content_targets[layer])
        style = sum(relative_sq_error(gram(feats[l]), fam.style_grams[l].expand(x.shape[0], -1, -1))
                    for l in fam.net.style_layers)
        return loss + fam.style_weight * style / len(fam.net.style_layers)


class NeuralArt(Family):
    """Stylisation problems with one style image; `content` maps each split (train, val, test) to
    image sources (l2o.images: paths, folders, `skimage:FILE`, `matplotlib:FILE`)."""

    draws_images = True

    def __init__(self, content: Mapping[str, Sequence[str] | str], style: str, features: FeatureNet | None = None,
                 size: int = 64, content_weight: float = 1.0, style_weight: float = 1.0, tv_weight: float = 1.0,
                 init: str = "noise", init_std: float = 0.1, crop_scale: Sequence[float] = (0.5, 1.0)):
        checks.integer(size, "optimizee.size", low=8, note=" (pixels per side)")
        if init not in INITS:
            raise L2OError(f"optimizee.init={init!r} is unknown; allowed: {', '.join(INITS)}.")
        for key, w in (("content_weight", content_weight), ("style_weight", style_weight), ("tv_weight", tv_weight),
                       ("init_std", init_std)):
            checks.number(w, f"optimizee.{key}", at_least=0)
        lo, hi = (float(v) for v in crop_scale)
        if not 0 < lo <= hi <= 1:
            raise L2OError(f"optimizee.crop_scale={list(crop_scale)!r} must be [low, high] with 0 < low <= high <= 1.")
        missing = [s for s in ("train", "val", "test") if not content.get(s)]
        if missing:
            raise L2OError(f"optimizee.content needs image sources for every split; none for {', '.join(missing)}.")
        self.size, self.init, self.init_std, self.crop_scale = int(size), init, float(init_std), (lo, hi)
        self.content_weight, self.style_weight, self.tv_weight = float(content_weight), float(style_weight), float(tv_weight)
        self.net = features if features is not None else FeatureNet()
        self.content = {s: load_images(content[s], f"optimizee.content.{s}") for s in ("train", "val", "test")}
        (self.style_name, style_image), = load_images(style, "optimizee.style")[:1]
        self.style_image = square_crop(style_image, self.size).unsqueeze(0)
        self.spec = ParamSpec({"image": (3, self.size, self.size)}, {"image": "pixel"})
        self.description = (f"neural art {self.size}×{self.size}, style {self.style_name}, features: "
                            f"{self.net.description}")
        self._device = torch.device("cpu")
        self._style_targets()

    def _style_targets(self) -> None:
        with torch.no_grad():
            feats = self.net(self.style_image)
            self.style_grams = {l: gram(feats[l]) for l in self.net.style_layers}

    def to(self, device: torch.device | str) -> "NeuralArt":
        device = torch.device(device)
        if device != self._device:
            self.net.to(device)
            self.style_image = self.style_image.to(device)
            self._style_targets()
            self._device = device
        return self

    def crop(self, seed: int, gen: torch.Generator) -> tuple[str, Tensor]:
        """Instance `seed`'s content image, (source name, (3, size, size)), from its generator."""
        images = self.content[split_of(seed)]
        name, image = images[int(torch.randint(len(images), (1,), generator=gen))]
        lo, hi = self.crop_scale
        scale = lo + (hi - lo) * float(torch.rand((), generator=gen))
        corner = torch.rand(2, generator=gen).tolist()
        return name, square_crop(image, self.size, scale, (corner[0], corner[1]))

    def sample(self, seeds: Sequence[int], device: torch.device | str = "cpu") -> NeuralArtProblem:
        self.to(device)
        names, contents, thetas = [], [], []
        for seed in seeds:
            gen = generator_for(seed)
            name, content = self.crop(seed, gen)
            if self.init == "noise":
                theta = torch.rand(content.shape, generator=gen)
            else:
                theta = content + self.init_std * torch.randn(content.shape, generator=gen)
            names.append(name)
            contents.append(content)
            thetas.append(theta.reshape(-1))
        return NeuralArtProblem(self, torch.stack(contents).to(device), torch.stack(thetas).to(device), names)
