"""Datasets are plain Hydra nodes (`_target_: torchvision.datasets.MNIST`, `root: ...`);
this module turns a failure to load one into a message that says how to fix the path.

The data root is `$L2O_DATA_DIR` (a folder laid out like `shared/data`: `mnist/MNIST/raw/...`),
overridable per dataset in config (`optimizee.dataset.root=...`).
"""
from __future__ import annotations

import os

from l2o.errors import L2OError

ENV_VAR = "L2O_DATA_DIR"


def dataset_error(key: str, target: str, root: str, detail: str) -> L2OError:
    return L2OError(
        f"{key}: could not load {target} from root {root!r} ({detail}). The data root comes from ${ENV_VAR} "
        f"(now {os.environ.get(ENV_VAR, 'unset')!r}): point it at a folder laid out like shared/data "
        f"(mnist/MNIST/raw/...), or set {key}.root=PATH; with internet access, {key}.download=true "
        "lets torchvision fetch the files."
    )


# size and md5 of the decompressed official MNIST files (the md5s torchvision's download checks)
KNOWN_MD5 = {
    "MNIST/raw/train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "MNIST/raw/train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "MNIST/raw/t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "MNIST/raw/t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}
_md5s: dict[tuple[str, int, int], str] = {}


def file_md5(path: str | os.PathLike) -> str:
    """The md5 of a file, computed once per (path, size, mtime) in this process."""
    import hashlib

    stat = os.stat(path)
    cache_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _md5s:
        digest = hashlib.md5()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        _md5s[cache_key] = digest.hexdigest()
    return _md5s[cache_key]


def verify_files(root: str | os.PathLike, key: str = "optimizee.dataset") -> None:
    """Check every known data file under `root` before use: a file of the official size must
    have the official md5 (a flipped byte is caught); any other size must be a consistent IDX
    file (header count × item size), as a deliberate subset is. Absent files are left to the
    dataset class, which says so."""
    from pathlib import Path

    for rel, (size, expected) in KNOWN_MD5.items():
        path = Path(root) / rel
        if not path.is_file():
            continue
        stat = path.stat()
        if stat.st_size != size:
            _check_idx(path, key)
            continue
        digest = file_md5(path)
        if digest != expected:
            raise L2OError(
                f"{key}: data file {str(path)!r} is corrupt or not the official release "
                f"(md5 {digest}, expected {expected}, {stat.st_size} bytes). "
                f"Restore it from a clean copy (e.g. shared/data) or point {key}.root / ${ENV_VAR} elsewhere."
            )


def _check_idx(path, key: str) -> None:
    """An IDX file's header (magic, dims) must account for exactly its size."""
    import math
    import struct

    with open(path, "rb") as fh:
        head = fh.read(4)
        ndim = head[3] if len(head) == 4 else 0
        dims = struct.unpack(f">{ndim}I", fh.read(4 * ndim)) if ndim else ()
    expected = 4 + 4 * ndim + math.prod(dims)
    if len(head) < 4 or head[:2] != b"\x00\x00" or len(dims) != ndim or path.stat().st_size != expected:
        raise L2OError(
            f"{key}: data file {str(path)!r} is truncated or not an IDX file ({path.stat().st_size} bytes, header "
            f"says {expected}). Restore it from a clean copy (e.g. shared/data) or point {key}.root / ${ENV_VAR} elsewhere."
        )
