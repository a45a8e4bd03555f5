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


# md5 of the decompressed official MNIST files (the values torchvision's download checks)
KNOWN_MD5 = {
    "MNIST/raw/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "MNIST/raw/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "MNIST/raw/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "MNIST/raw/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
_verified: dict[tuple[str, int, int], str] = {}


def verify_files(root: str | os.PathLike, key: str = "optimizee.dataset") -> None:
    """Check every known data file under `root` against its published md5 before use.

    A file that is absent is left to the dataset class (which says so); a file that is
    present but differs (truncated, corrupted, a different release) is an error naming it.
    """
    import hashlib
    from pathlib import Path

    for rel, expected in KNOWN_MD5.items():
        path = Path(root) / rel
        if not path.is_file():
            continue
        stat = path.stat()
        cache_key = (str(path), stat.st_size, stat.st_mtime_ns)
        if cache_key not in _verified:
            digest = hashlib.md5()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
            _verified[cache_key] = digest.hexdigest()
        if _verified[cache_key] != expected:
            raise L2OError(
                f"{key}: data file {str(path)!r} is corrupt or not the official release "
                f"(md5 {_verified[cache_key]}, expected {expected}, {stat.st_size} bytes). "
                f"Restore it from a clean copy (e.g. shared/data) or point {key}.root / ${ENV_VAR} elsewhere."
            )
