"""Image files for the neural-art optimizee: real photographs and textures that ship inside
installed packages (nothing downloads), or the user's own files and folders.

A source is a path (a file, or a folder whose image files are all taken, sorted by name) or
`package:file`, a file bundled with an installed package: `skimage:astronaut.png`
(scikit-image's `skimage/data`), `matplotlib:grace_hopper.jpg` (matplotlib's sample data).
Every file is opened and decoded before use; a missing or unreadable one is an error naming it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from l2o.errors import L2OError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _package_dir(package: str) -> Path:
    if package == "skimage":
        try:
            import skimage
        except ImportError as err:  # pragma: no cover - scikit-image is a dependency
            raise L2OError("image sources 'skimage:...' need scikit-image (pip install scikit-image).") from err
        return Path(skimage.__file__).parent / "data"
    if package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data"
    raise L2OError(f"unknown image package {package!r} in an image source; use skimage:FILE, matplotlib:FILE or a path.")


def resolve(source: str | os.PathLike) -> list[Path]:
    """The image files a source names (one for a file or `package:file`, all of a folder)."""
    text = str(source)
    package, sep, name = text.partition(":")
    if sep and package in ("skimage", "matplotlib") and not Path(text).exists():
        return [_package_dir(package) / name]
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise L2OError(f"image folder {str(path)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
        return files
    return [path]


def load_image(path: str | os.PathLike) -> Tensor:
    """An RGB image as a float tensor (3, H, W) in [0, 1]; grey images are repeated to RGB and
    an alpha channel is dropped."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise L2OError(f"image file {str(path)!r} is missing (an image source of the neural_art optimizee).")
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise L2OError(f"image file {str(path)!r} is unreadable as an image ({err}).") from err
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def load_images(sources: str | os.PathLike | Sequence[str | os.PathLike], what: str) -> list[tuple[str, Tensor]]:
    """(name, image) of every file of `sources` (a source or a list of them), in order."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files: list[Path] = [f for s in sources for f in resolve(s)]
    if not files:
        raise L2OError(f"{what}: no image sources given.")
    return [(f.name, load_image(f)) for f in files]


def square_crop(image: Tensor, size: int, scale: float = 1.0, corner: tuple[float, float] = (0.5, 0.5)) -> Tensor:
    """A square of side `scale` × the short side, its top-left corner at the fractions `corner`
    of the free room, resized to size×size (antialiased bilinear)."""
    _, h, w = image.shape
    side = max(1, round(min(h, w) * scale))
    top, left = round((h - side) * corner[0]), round((w - side) * corner[1])
    crop = image[:, top : top + side, left : left + side].unsqueeze(0)
    if side == size:
        return crop[0].clone()
    return torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)[0].clamp_(0, 1)

