"""Checkpoints: the one place that knows what a checkpoint holds.

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
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2o import __version__
from l2o.errors import L2OError
from l2o.optimizers.base import OptimizerNet, build_net
from l2o.utils import atomic_write

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CHECKPOINT_DIR = "checkpoints"
_LSTM_TARGET = "l2o.optimizers.lstm.CoordinatewiseLSTM"


def payload(net: OptimizerNet, **fields: Any) -> dict[str, Any]:
    """The checkpoint dict of `net` plus the given top-level fields (see the module docstring)."""
    return {
        "format_version": FORMAT_VERSION,
        "l2o_version": __version__,
        "optimizer": net.full_config(),
        "optimizer_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        **fields,
    }


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


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its best checkpoint, else its last)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            for candidate in (p / CHECKPOINT_DIR / name, p / name):
                if candidate.is_file():
                    return candidate
        raise L2OError(
            f"checkpoint={str(path)!r} is a directory without {CHECKPOINT_DIR}/best.pt or {CHECKPOINT_DIR}/last.pt; "
            "pass a checkpoint file or the run directory of an l2o-train run."
        )
    if not p.exists():
        raise L2OError(
            f"checkpoint={str(path)!r} does not exist; pass a .pt file written by l2o-train or its run directory."
        )
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of any readable format, returned in the current format's layout."""
    p = resolve_checkpoint_path(path)
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise L2OError(
            f"checkpoint {str(p)!r} could not be read as an l2o checkpoint (it was loaded with weights_only=True, "
            f"which refuses arbitrary pickled objects): {first_line}"
        ) from exc
    if not isinstance(data, dict) or "format_version" not in data:
        raise L2OError(f"checkpoint {str(p)!r} is not an l2o checkpoint (no format_version).")
    if data["format_version"] not in READABLE_VERSIONS:
        raise L2OError(
            f"checkpoint {str(p)!r} has format version {data['format_version']} "
            f"(written by l2o {data.get('l2o_version', '?')}); this l2o {__version__} reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}."
        )
    if data["format_version"] == 1:
        data = _upgrade_v1(data)
    data["path"] = str(p)
    return data


def _upgrade_v1(old: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (a CoordinatewiseLSTM, training fields at top level) in format 2's layout."""
    new = {k: v for k, v in old.items() if k not in ("net_config", "net_state", "progress", "meta_opt", "lr_sched", "rng")}
    new["optimizer"] = {"_target_": _LSTM_TARGET, **old["net_config"]}
    new["optimizer_state"] = old["net_state"]
    if "progress" in old:
        new["training"] = {k: old[k] for k in ("progress", "meta_opt", "lr_sched", "rng")}
    return new


def net_from_checkpoint(ckpt: dict[str, Any]) -> OptimizerNet:
    """The learned optimizer a (loaded) checkpoint holds, φ included."""
    net = build_net(ckpt["optimizer"])
    try:
        net.load_state_dict(ckpt["optimizer_state"])
    except RuntimeError as exc:
        raise L2OError(f"checkpoint {ckpt.get('path')!r}: weights do not fit its own architecture: {exc}") from exc
    return net


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
