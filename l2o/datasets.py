"""The offline CIFAR-10 subset (shared/data/cifar10_subset: 4,000 training and 1,000 test
images as ConvNetJS PNG strips, labels as text), read as torchvision reads CIFAR10: `.data`
(N, 32, 32, 3) uint8 and `.targets`, so the optimizee takes it or torchvision's `CIFAR10`
(the full set, for users who have it) through the same code path.

Every file is checked against the size and md5 of the release before use; a missing or
different file is an error naming it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from l2o.data import file_md5
from l2o.errors import L2OError

# file -> (bytes, md5), as listed in shared/data/README.md
SUBSET_FILES = {
    "cifar10_batch_0.png": (2_318_456, "22905c3a5cc5e101d06a2b6d6087eff0"),
    "cifar10_batch_1.png": (2_326_379, "268c70910bb9bd5055b57d0870f26d63"),
    "cifar10_batch_2.png": (2_312_906, "7276547afd77ffb906d58242360a2534"),
    "cifar10_batch_3.png": (2_328_590, "7daf46aac2cef4fae955f89c83a9c34f"),
    "cifar10_batch_50.png": (2_315_890, "fc6b4e3450caf155c495dd8de98e47bf"),
    "train_labels.txt": (100_000, "25fae41a566bb218cee2a1695551982e"),
    "test_labels.txt": (2_000, "c86e7e8091164939dca05635ec5f1194"),
}
TRAIN_STRIPS, TEST_STRIPS = (0, 1, 2, 3), (50,)
IMAGES_PER_STRIP = 1000


def verify(path: Path) -> None:
    """`path` exists and has the release's size and md5, else an error naming it."""
    size, md5 = SUBSET_FILES[path.name]
    fix = ("Restore it from a clean copy (shared/data/cifar10_subset) or point optimizee.dataset.root / "
           "$L2O_DATA_DIR at a folder that has it.")
    if not path.is_file():
        raise L2OError(f"CIFAR-10 subset file {str(path)!r} is missing. {fix}")
    actual = path.stat().st_size
    digest = file_md5(path) if actual == size else None
    if digest != md5:
        raise L2OError(f"CIFAR-10 subset file {str(path)!r} is corrupt ({actual} bytes, md5 {digest or '-'}; "
                       f"expected {size} bytes, md5 {md5}). {fix}")


class CIFAR10Subset(torch.utils.data.Dataset):
    """`train=True`: the first 4,000 images of CIFAR-10's training set; `train=False`: the first
    1,000 of its test set. `download` is accepted for config compatibility with torchvision's
    CIFAR10; the subset is never downloaded."""

    def __init__(self, root: str | os.PathLike, train: bool = True, download: bool = False):
        from PIL import Image

        self.root, self.train = str(root), bool(train)
        folder = Path(root)
        strips = TRAIN_STRIPS if self.train else TEST_STRIPS
        labels_file = folder / ("train_labels.txt" if self.train else "test_labels.txt")
        paths = [folder / f"cifar10_batch_{i}.png" for i in strips]
        for path in (*paths, labels_file):
            verify(path)
        images = []
        for path in paths:
            with Image.open(path) as img:
                strip = np.asarray(img.convert("RGB"))
            images.append(strip.reshape(IMAGES_PER_STRIP, 32, 32, 3))
        self.data = np.concatenate(images)
        self.targets = np.loadtxt(labels_file, dtype=np.int64)[: len(self.data)].tolist()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """A (3, 32, 32) float image in [0, 1] and its label."""
        return torch.from_numpy(self.data[index]).permute(2, 0, 1).float() / 255, self.targets[index]


# --- CIFAR-10 as JPEG (all 60,000 images), and any folder of 32×32 images by class -----------------

JPEG_TARBALL = "cifar10_jpeg.tar.gz"
JPEG_RELEASE = (19_433_766, "97a885386ac940ec95312e53cd0d3606")   # shared/data/README.md, section 2b
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CACHE_ENV = "L2O_CACHE_DIR"


def cache_dir() -> Path:
    """Where decoded datasets are kept: $L2O_CACHE_DIR, else ~/.cache/l2o."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "l2o")


class ImageFolder32(torch.utils.data.Dataset):
    """A dataset of 32×32 RGB images by class with torchvision CIFAR10's interface (`.data`
    (N, 32, 32, 3) uint8, `.targets`, `.classes`), read from `root`:

    - `root/cifar10_jpeg.tar.gz` (all of CIFAR-10 as JPEG, shared/data/cifar10_jpeg): its size and
      md5 are checked first, then it is read without unpacking;
    - or a folder tree `root/train/<class>/<image>`, `root/test/<class>/...` (what unpacking that
      tarball gives, or a user's own images): classes are the sorted folder names (CIFAR-10's label
      order), images sorted by name within a class.

    Either way the images come class by class (the JPEG copy does not keep CIFAR-10's original
    order), so sample them at random, never as a contiguous split (`test_part_start` refuses it).

    The images are decoded once and the arrays cached under `cache_dir()` (named by the source's
    checksum: the tarball's md5, or a digest of the folder's file names, sizes and times), so later
    runs load them in a second. A missing, truncated or altered tarball, an image that is not 32×32,
    an empty class or a split without classes is an error naming it, raised before anything is
    written. `download` is accepted for config compatibility with torchvision; nothing downloads."""

    def __init__(self, root: str | os.PathLike, train: bool = True, download: bool = False):
        self.root, self.train = str(root), bool(train)
        split = "train" if self.train else "test"
        source, key = _source_key(Path(root))
        cached = cache_dir() / f"images32-{key}-{split}.npz"
        if cached.is_file():
            with np.load(cached, allow_pickle=False) as npz:
                self.data, self.targets, self.classes = npz["data"], npz["targets"].tolist(), npz["classes"].tolist()
            return
        self.data, self.targets, self.classes = _decode(source, split)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, data=self.data, targets=np.asarray(self.targets, dtype=np.int64), classes=np.asarray(self.classes))
        os.replace(tmp, cached)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """A (3, 32, 32) float image in [0, 1] and its label."""
        return torch.from_numpy(self.data[index]).permute(2, 0, 1).float() / 255, self.targets[index]


def _source_key(root: Path) -> tuple[Path, str]:
    """The tarball (checked) or the folder, and the checksum that names its cache."""
    tarball = root / JPEG_TARBALL
    fix = ("Restore it from a clean copy (shared/data/cifar10_jpeg) or point optimizee.dataset.root / "
           "$L2O_DATA_DIR at a folder that has it, or at a tree of train/<class>/ and test/<class>/ images.")
    if not tarball.exists():
        if any((root / split).is_dir() for split in ("train", "test")):
            return root, _folder_digest(root)
        raise L2OError(f"CIFAR-10 JPEG file {str(tarball)!r} is missing (and {str(root)!r} holds no train/ or test/ "
                       f"image folders). {fix}")
    size, md5 = JPEG_RELEASE
    actual = tarball.stat().st_size
    digest = file_md5(tarball) if actual == size else None
    if digest != md5:
        raise L2OError(f"CIFAR-10 JPEG file {str(tarball)!r} is truncated or altered ({actual} bytes, md5 "
                       f"{digest or '-'}; expected {size} bytes, md5 {md5}). {fix}")
    return tarball, md5


def _folder_digest(root: Path) -> str:
    """A checksum of a folder's file names, sizes and modification times (cheap, and changes when a file does)."""
    import hashlib

    listing = hashlib.md5()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        listing.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return listing.hexdigest()


def _decode(source: Path, split: str) -> tuple[np.ndarray, list[int], list[str]]:
    """Every image of `split` as (N, 32, 32, 3) uint8, its label and the class names."""
    import io
    import tarfile

    from PIL import Image

    def image(raw, name: str) -> np.ndarray:
        try:
            with Image.open(raw) as img:
                array = np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise L2OError(f"{name}: not a readable image ({exc}).") from exc
        if array.shape != (32, 32, 3):
            raise L2OError(f"{name} is {array.shape[1]}×{array.shape[0]} pixels; every image must be 32×32.")
        return array

    by_class: dict[str, list[tuple[str, np.ndarray]]] = {}
    if source.is_file():  # the tarball, read in place
        with tarfile.open(source) as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 3 and parts[0] == split and parts[2].lower().endswith(IMAGE_SUFFIXES):
                    raw = io.BytesIO(tar.extractfile(member).read())
                    by_class.setdefault(parts[1], []).append((parts[2], image(raw, f"{source}:{member.name}")))
                elif member.isdir() and len(parts) == 2 and parts[0] == split:
                    by_class.setdefault(parts[1], [])
    else:
        folder = source / split
        if not folder.is_dir():
            raise L2OError(f"{str(folder)!r} does not exist: an image folder needs {split}/<class>/<images>.")
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            by_class[class_dir.name] = [(p.name, image(p, str(p))) for p in files]
    if not by_class:
        raise L2OError(f"{source}: no classes in {split}/ (expected {split}/<class>/<images>).")
    empty = [c for c, images in by_class.items() if not images]
    if empty:
        raise L2OError(f"{source}: the class folder(s) {split}/{', '.join(sorted(empty))} hold no images.")
    classes = sorted(by_class)
    data, targets = [], []
    for label, name in enumerate(classes):
        for _, array in sorted(by_class[name], key=lambda item: item[0]):
            data.append(array)
            targets.append(label)
    return np.stack(data), targets, classes
