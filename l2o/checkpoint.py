"""Checkpoints: what a checkpoint holds (the reading and writing of the format itself is
`l2o.optimizers.files`; this module adds what resuming a meta-training needs).

A checkpoint is a plain dict of tensors and Python primitives, written atomically and read
with `torch.load(weights_only=True)`, so a crafted pickle is refused, not run. Format 2:

    format_version   2
    l2o_version      the package version that wrote it
    optimizer        the architecture: {"_target_": "<module>.<Class>", **config} (any
                     OptimizerNet, routed ones with their sub-optimizers and rules)
    optimizer_state  φ (the net's state_dict)
    optimizee        {"name", "config"}: what it was trained on
    schedule         the schedule as plain data (truncation, objective, ... as _target_ configs)
    config           the whole composed Hydra config of the run
    training         {"progress", "meta_opt", "lr_sched", "rng"}: what exact resume needs
    val_loss         (best.pt) the validation score that made it the best

Format 1 (l2o 0.1: a CoordinatewiseLSTM's `net_config` / `net_state`, the training fields at
top level) still loads and gives the same updates.
"""
from __future__ import annotations

import importlib
import inspect
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2o.errors import L2OError
from l2o.optimizers.base import OptimizerNet
from l2o.optimizers.files import (CHECKPOINT_DIR, FORMAT_VERSION, READABLE_VERSIONS, load_checkpoint,
                                  net_from_checkpoint, payload, resolve_checkpoint_path)
from l2o.utils import atomic_write

# the file format (l2o.optimizers.files) and what resuming a meta-training adds to it
__all__ = ["CHECKPOINT_DIR", "FORMAT_VERSION", "READABLE_VERSIONS", "architecture_diffs", "check_architecture",
           "constructor_default", "load_checkpoint", "load_with_fallback", "net_from_checkpoint", "payload",
           "resolve_checkpoint_path", "restore_training", "save_checkpoint", "training_fields", "training_horizon"]



def save_checkpoint(path: str | Path, net: OptimizerNet, keep_previous: bool = False, **fields: Any) -> None:
    """Write atomically; with `keep_previous` the file it replaces stays as `<name>.prev.pt`.

    The previous file is copied (not hard-linked: a link would share the inode, so damage to
    `path` in place would damage the fallback too), and `path` itself exists at every moment."""
    path = Path(path)
    if keep_previous and path.exists():
        atomic_write(previous_path(path), lambda fh: fh.write(path.read_bytes()))
    data = payload(net, **fields)
    atomic_write(path, lambda fh: torch.save(data, fh))


def training_fields(progress: dict[str, Any], meta_opt: torch.optim.Optimizer, lr_sched: Any,
                    seed_gen: torch.Generator) -> dict[str, Any]:
    """The `training` field: everything an exact resume restores besides φ."""
    return {"progress": progress, "meta_opt": meta_opt.state_dict(), "lr_sched": lr_sched.state_dict(),
            "rng": rng_state(seed_gen)}


def restore_training(ckpt: dict[str, Any], net: OptimizerNet, meta_opt: torch.optim.Optimizer, lr_sched: Any,
                     seed_gen: torch.Generator) -> dict[str, Any]:
    """Load φ, the meta-optimizer, the lr schedule and every RNG from `ckpt`; returns the progress record."""
    net.load_state_dict(ckpt["optimizer_state"])
    training = ckpt["training"]
    meta_opt.load_state_dict(training["meta_opt"])
    lr_sched.load_state_dict(training["lr_sched"])
    set_rng_state(training["rng"], seed_gen)
    return dict(training["progress"])


def rng_state(seed_gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "sampler": seed_gen.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any], seed_gen: torch.Generator) -> None:
    seed_gen.set_state(state["sampler"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    random.setstate(_tuplify(state["python"]))


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


def previous_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev.pt")


def load_with_fallback(path: Path) -> dict[str, Any]:
    """Load `path`; if it is corrupt or truncated, warn and load the previous good one."""
    try:
        return load_checkpoint(path)
    except L2OError as exc:
        prev = previous_path(path)
        if not prev.exists():
            raise
        print(f"l2o: warning: {exc} Using the previous checkpoint {prev}.", file=sys.stderr)
        return load_checkpoint(prev)


def training_horizon(ckpt: dict[str, Any]) -> int:
    """The (base) horizon T the checkpoint's optimizer was meta-trained for: evaluation's default."""
    return int((ckpt.get("schedule") or {}).get("horizon") or 100)


def architecture_diffs(stored: dict[str, Any], expected: dict[str, Any], prefix: str = "optimizer") -> list[str]:
    """Every field (recursively) where the configured architecture `expected` differs from `stored`."""
    diffs = []
    for key, want in expected.items():
        have = stored.get(key)
        if isinstance(want, dict) and isinstance(have, dict):
            diffs += architecture_diffs(have, want, f"{prefix}.{key}")
        elif key == "_target_" and _class_of(want) is not None and _class_of(want) is _class_of(have):
            continue  # the same class by another import path (l2o.optimizers.Routed = l2o.optimizers.routed.Routed)
        elif key not in stored and _norm(want) == _norm(_default(stored.get("_target_"), key)):
            continue  # a field added since the checkpoint was written, set to the default it was built with
        elif key != "_partial_" and _norm(want) != _norm(have):
            diffs.append(f"{prefix}.{key}: config {want!r} vs checkpoint {have!r}")
    return diffs


def check_architecture(ckpt: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise an error listing every architecture field where `expected` differs from the checkpoint."""
    if "nets" in expected:  # routing: `net` is only the template its rules interpolate (l2o.optimizers.Routed)
        expected = {k: v for k, v in expected.items() if k != "net"}
    diffs = architecture_diffs(ckpt["optimizer"], expected)
    if diffs:
        raise L2OError(
            f"checkpoint {ckpt['path']!r} does not match the configured optimizer architecture ("
            + "; ".join(diffs)
            + "). Drop the optimizer overrides to use the checkpoint's own architecture."
        )


def _class_of(target: Any) -> Any:
    """The object a `_target_` string names, or None."""
    if not isinstance(target, str) or "." not in target:
        return None
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def constructor_default(cls: type, key: str) -> Any:
    """The default of constructor argument `key` of `cls` (a checkpoint written before that
    argument existed was built with it), or a sentinel that equals nothing."""
    param = inspect.signature(cls).parameters.get(key)
    return _MISSING if param is None or param.default is inspect.Parameter.empty else param.default


def _default(target: Any, key: str) -> Any:
    """`constructor_default` of the class a `_target_` string names."""
    cls = _class_of(target)
    return constructor_default(cls, key) if isinstance(cls, type) else _MISSING


_MISSING = object()


def _norm(v: Any) -> Any:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
