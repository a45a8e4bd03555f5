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
