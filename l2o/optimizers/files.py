"""A learned optimizer as a file: writing and reading the checkpoint format, and the optimizers
that ship inside the package. The layer below `l2o.checkpoint` (which adds what resuming a
meta-training needs) and below `LearnedOptimizer`, so neither reaches up for the other.

A checkpoint is a plain dict of tensors and Python primitives read with
`torch.load(weights_only=True)`; its fields are described in `l2o.checkpoint`.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from l2o import __version__
from l2o.errors import L2OError
from l2o.optimizers.base import OptimizerNet, build_net

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CHECKPOINT_DIR = "checkpoints"
_LSTM_TARGET = "l2o.optimizers.lstm.CoordinatewiseLSTM"
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"   # l2o/pretrained/NAME.pt


def payload(net: OptimizerNet, **fields: Any) -> dict[str, Any]:
    """The checkpoint dict of `net` plus the given top-level fields (see the module docstring)."""
    return {
        "format_version": FORMAT_VERSION,
        "l2o_version": __version__,
        "optimizer": net.full_config(),
        "optimizer_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        **fields,
    }


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


def net_from_checkpoint(ckpt: dict[str, Any], settings: dict[str, Any] | None = None) -> OptimizerNet:
    """The learned optimizer a (loaded) checkpoint holds, φ included. `settings` change fields of its
    architecture's config that hold no weights, for deployment (e.g. `{"warmup": 30}`: a warm-up the
    net was not meta-trained with); φ must still fit."""
    if not settings:
        net = build_net(ckpt["optimizer"])
        try:
            net.load_state_dict(ckpt["optimizer_state"])
        except RuntimeError as exc:
            raise L2OError(f"checkpoint {ckpt.get('path')!r}: weights do not fit its own architecture: {exc}") from exc
        return net
    if "_target_" in settings:
        raise L2OError(f"checkpoint {ckpt.get('path')!r}: the architecture (_target_) is not a deployment setting.")
    try:
        net = build_net({**ckpt["optimizer"], **settings})
        net.load_state_dict(ckpt["optimizer_state"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise L2OError(f"checkpoint {ckpt.get('path')!r}: its architecture with {settings} does not build "
                       f"or its φ does not fit: {exc}") from exc
    return net


def fingerprint(net: OptimizerNet) -> str:
    """A short hash of a learned optimizer's architecture and φ: an evaluation records it, so its
    results are never taken for those of a φ trained again into the same checkpoint path."""
    h = hashlib.sha256(json.dumps(net.full_config(), sort_keys=True, default=str).encode())
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def available() -> list[str]:
    """The trained optimizers shipped with l2o (`LearnedOptimizer.from_pretrained(NAME, model)`)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def pretrained_path(name: str) -> Path:
    path = PRETRAINED_DIR / f"{name}.pt"
    if not path.is_file():
        raise L2OError(f"no pretrained optimizer named {name!r}; available: {', '.join(available()) or 'none'}.")
    return path
