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
