"""ImageFolder32: all of CIFAR-10 from the JPEG tarball, or any folder of 32×32 images by class,
with torchvision CIFAR10's interface; decoded once and cached; bad input refused before anything
is written."""
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA
from l2o.datasets import JPEG_TARBALL, ImageFolder32
from l2o.errors import L2OError
from l2o.optimizees import ConvClassifier

TARBALL = SHARED_DATA / "cifar10_jpeg" / JPEG_TARBALL


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tree(root, sizes=None, empty=()):
    """root/{train,test}/{cat,dog}/k.png: 3 images per class, pixel values that name them."""
    for split in ("train", "test"):
        for label, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            if name in empty:
                continue
            for k in range(3):
                size = (sizes or {}).get((split, name, k), 32)
                pixels = np.full((size, size, 3), 10 * label + k, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")
    return root


def test_a_folder_of_images_by_class_reads_like_torchvision_cifar10(tmp_path, cache):
    data = ImageFolder32(_tree(tmp_path / "imgs"), train=True)
    assert data.data.shape == (6, 32, 32, 3) and data.data.dtype == np.uint8
    assert data.targets == [0, 0, 0, 1, 1, 1] and data.classes == ["cat", "dog"]
    assert [int(x[0, 0, 0]) for x in data.data] == [0, 1, 2, 10, 11, 12]
    assert len(list(cache.glob("*.npz"))) == 1
    fam = ConvClassifier(data, ImageFolder32(tmp_path / "imgs", train=False), batch_size=2)   # the optimizee takes it
    assert fam.x.shape == (6, 3, 32, 32)


def test_a_train_test_split_of_images_ordered_by_class_is_refused(tmp_path):
    """An image folder lists its images class by class: a contiguous split of it would train on some
    classes and test on others."""
    data = ImageFolder32(_tree(tmp_path / "imgs"), train=True)
    with pytest.raises(L2OError, match=r"ordered by class .* only classes \[0\] and test problems only \[0, 1\]"):
        ConvClassifier(data, batch_size=2, test_part_start=2)


def test_decoded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    root = _tree(tmp_path / "imgs")
    first = ImageFolder32(root)
    monkeypatch.setattr("l2o.datasets._decode", lambda *a: pytest.fail("decoded again"))
    again = ImageFolder32(root)
    assert np.array_equal(first.data, again.data) and first.targets == again.targets
    (root / "train" / "cat" / "0.png").write_bytes((root / "train" / "dog" / "0.png").read_bytes())  # a changed file
    monkeypatch.undo()
    assert int(ImageFolder32(root).data[0, 0, 0, 0]) == 10   # a new checksum: decoded anew


@pytest.mark.parametrize("bad, message", [
    ({"sizes": {("train", "dog", 1): 28}}, "dog/1.png is 28×28 pixels; every image must be 32×32"),
    ({"empty": ("dog",)}, "train/dog hold no images"),
])
def test_bad_folders_are_refused_naming_the_problem_and_write_nothing(tmp_path, cache, bad, message):
    with pytest.raises(L2OError, match=message):
        ImageFolder32(_tree(tmp_path / "imgs", **bad))
    assert not cache.exists() or not any(cache.iterdir())
    with pytest.raises(L2OError, match="no classes"):
        (tmp_path / "none" / "train").mkdir(parents=True)
        ImageFolder32(tmp_path / "none")


@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_a_missing_truncated_or_altered_tarball_is_named(tmp_path, cache, damage):
    root = tmp_path / "jpeg"
    root.mkdir()
    if damage != "missing":
        shutil.copy(TARBALL, root / JPEG_TARBALL)
        raw = bytearray((root / JPEG_TARBALL).read_bytes())
        if damage == "truncated":
            raw = raw[: len(raw) // 2]
        else:
            raw[len(raw) // 2] ^= 0xFF
        (root / JPEG_TARBALL).write_bytes(bytes(raw))
    with pytest.raises(L2OError, match=f"{JPEG_TARBALL}.*(missing|truncated or altered)"):
        ImageFolder32(root)
    assert not cache.exists()


@pytest.mark.slow  # decodes 10,000 JPEGs (about 15 s); the CIFAR presets read the same tarball
def test_all_of_cifar10_test_split_from_the_tarball():
    test = ImageFolder32(TARBALL.parent, train=False)
    assert test.data.shape == (10_000, 32, 32, 3) and np.bincount(test.targets).tolist() == [1000] * 10
    assert test.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
