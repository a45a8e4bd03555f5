"""Frozen convolutional feature networks for the neural-art losses.

- `vgg19`: torchvision's VGG-19 `features` with its ImageNet weights, from a configured file or
  the torch hub cache (`download=true` lets torchvision fetch them, for users with internet).
- `random_vgg19`: the same layer layout with fixed seeded random weights (He-normal, zero
  bias). Random filters give usable texture statistics (Ustyuzhaninov et al. 2016, "Texture
  synthesis using shallow convolutional networks with random filters"); they are *not*
  ImageNet VGG-19, and every output that uses them says so.
- `random_shallow`: four random 3×3 conv layers (64, 128, 256, 256 channels) with pooling in
  between: about 6× cheaper than VGG-19 at the same resolution.
- `cifar_vgg`: a small VGG-style network (3 blocks of two 3×3 convs, 32-64-128 channels) trained
  by `python -m l2o.optimizees.features train` to classify all of CIFAR-10: features learned from
  real images that every machine has (its weights ship in the package, `cifar_vgg.pt`, with its
  test accuracy and the command that trained it).
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
CIFAR_CFG = (32, 32, "M", 64, 64, "M", 128, 128, "M")
CIFAR_WEIGHTS = Path(__file__).resolve().parent / "cifar_vgg.pt"   # written by `python -m l2o.optimizees.features train`
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
KINDS = ("auto", "vgg19", "random_vgg19", "random_shallow", "cifar_vgg")
# (content, style) layers: Gatys et al.'s for ImageNet VGG-19; with random weights a deep content
# layer keeps too little of the image (from noise, matching conv4_2 to 5% left the picture
# unrecognisable; conv3_1 keeps it, checked by eye at 64×64)
DEFAULT_LAYERS = {
    "vgg19": (("conv4_2",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")),
    "random_vgg19": (("conv3_1",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")),
    "random_shallow": (("conv2_1",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1")),
    "cifar_vgg": (("conv2_2",), ("conv1_1", "conv2_1", "conv3_1", "conv3_2")),
}
CFGS = {"vgg19": VGG19_CFG, "random_vgg19": VGG19_CFG, "random_shallow": SHALLOW_CFG, "cifar_vgg": CIFAR_CFG}
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
                           "use kind=vgg19 (or auto, or cifar_vgg) to load them.")
        source = Path(weights).expanduser() if weights is not None else None
        if source is not None and not source.is_file():
            raise L2OError(f"optimizee.features.weights={str(source)!r}: no such file (kind={kind}'s weights).")
        if kind == "auto":
            source = source or cached_vgg19()
            kind = "vgg19" if source is not None or download else "random_vgg19"
        self.kind = kind
        layers, names = build_layers(CFGS[kind], pool)
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
        elif kind == "cifar_vgg":
            self.description = _load_cifar_vgg(layers, source or CIFAR_WEIGHTS)
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


def _load_cifar_vgg(layers: nn.Sequential, path: Path) -> str:
    """Load the trained CIFAR-10 features into `layers` (the layers the losses use); their description."""
    if not path.is_file():
        raise L2OError(f"optimizee.features.kind=cifar_vgg: no weights at {str(path)!r}; train them with "
                       "`python -m l2o.optimizees.features train` (or set optimizee.features.weights=FILE).")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("cfg") != list(CIFAR_CFG):
        raise L2OError(f"optimizee.features.weights: {str(path)!r} is not a cifar_vgg file (python -m l2o.optimizees.features train).")
    needed = layers.state_dict()
    layers.load_state_dict({k: v for k, v in saved["state_dict"].items() if k in needed})
    return (f"cifar_vgg (trained on CIFAR-10, test accuracy {100 * saved['test_accuracy']:.1f}%, "
            f"{saved['epochs']} epochs; {path.name})")


def train_cifar_vgg(root: str | os.PathLike, out: str | os.PathLike, epochs: int = 15, batch_size: int = 128,
                    lr: float = 0.05, seed: int = 0, progress: bool = True) -> tuple[float, int]:
    """Train the `cifar_vgg` features as a CIFAR-10 classifier (batch norm after every conv, global
    average pooling and a linear head, SGD with Nesterov momentum and a one-cycle lr, random crops and
    flips), then fold each batch norm into its conv so the shipped net is plain conv + ReLU like VGG.
    Inputs are normalised as FeatureNet does (ImageNet mean and std). Returns the test accuracy and
    the number of test images."""
    from tqdm.auto import tqdm

    from l2o.datasets import ImageFolder32

    torch.manual_seed(seed)
    data = {split: ImageFolder32(root, train=split == "train") for split in ("train", "test")}
    x = {s: torch.from_numpy(d.data).permute(0, 3, 1, 2).float().div(255) for s, d in data.items()}
    y = {s: torch.tensor(d.targets) for s, d in data.items()}
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    body, _ = build_layers(CIFAR_CFG, "max")
    with_bn = nn.Sequential(*[m for layer in body for m in
                              ((layer, nn.BatchNorm2d(layer.out_channels)) if isinstance(layer, nn.Conv2d) else (layer,))])
    model = nn.Sequential(with_bn, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(CIFAR_CFG[-2], 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * (len(y["train"]) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    bar = tqdm(total=steps, desc="train cifar_vgg", disable=not progress)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y["train"]))
        for i in range(len(order) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            xb = _augment(x["train"][idx])
            loss = nn.functional.cross_entropy(model((xb - mean) / std), y["train"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        correct = sum(int((model((xb - mean) / std).argmax(1) == yb).sum())
                      for xb, yb in zip(x["test"].split(500), y["test"].split(500)))
    accuracy = correct / len(y["test"])
    folded = _fold_batch_norms(with_bn)
    torch.save({"cfg": list(CIFAR_CFG), "state_dict": folded.state_dict(), "test_accuracy": accuracy, "epochs": epochs,
                "command": f"python -m l2o.optimizees.features train --epochs {epochs} --lr {lr} --seed {seed}",
                "data": "CIFAR-10 (JPEG), 50,000 training / 10,000 test images"}, out)
    return accuracy, len(y["test"])


def _augment(images: Tensor) -> Tensor:
    """Random 32×32 crops of the images padded by 4 (reflect), and random horizontal flips."""
    padded = nn.functional.pad(images, (4, 4, 4, 4), mode="reflect")
    i, j = torch.randint(0, 9, (2,))
    crops = padded[:, :, i:i + 32, j:j + 32]
    flip = torch.rand(len(images)) < 0.5
    crops[flip] = crops[flip].flip(-1)
    return crops


def _fold_batch_norms(with_bn: nn.Sequential) -> nn.Sequential:
    """The conv-BN-ReLU stack as conv-ReLU with each (eval-mode) batch norm folded into its conv."""
    layers: list[nn.Module] = []
    modules = list(with_bn)
    for k, m in enumerate(modules):
        if isinstance(m, nn.BatchNorm2d):
            continue
        if isinstance(m, nn.Conv2d):
            bn = modules[k + 1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding)
            with torch.no_grad():
                conv.weight.copy_(m.weight * scale.view(-1, 1, 1, 1))
                conv.bias.copy_((m.bias - bn.running_mean) * scale + bn.bias)
            m = conv
        layers.append(m)
    return nn.Sequential(*layers)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m l2o.optimizees.features",
                                     description="Train the cifar_vgg feature network on all of CIFAR-10.")
    parser.add_argument("command", choices=["train"])
    parser.add_argument("--data", default=os.path.join(os.environ.get("L2O_DATA_DIR", "data"), "cifar10_jpeg"),
                        help="the CIFAR-10 JPEG tarball's folder, or a train/ test/ image tree ($L2O_DATA_DIR/cifar10_jpeg)")
    parser.add_argument("--out", default=str(CIFAR_WEIGHTS), help=f"where to write the weights ({CIFAR_WEIGHTS})")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    accuracy, n = train_cifar_vgg(args.data, args.out, args.epochs, lr=args.lr, seed=args.seed)
    print(f"cifar_vgg: test accuracy {100 * accuracy:.2f}% on {n:,} test images; weights in {args.out}")


if __name__ == "__main__":
    main()
