"""Checkpoints: written atomically, read with `weights_only=True`, checked for compatibility.

A checkpoint is a plain dict of tensors and Python primitives, so `torch.load` never has
to unpickle arbitrary objects: a crafted pickle is refused, not run.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import torch

from l2o import __version__
from l2o.errors import L2OError
from l2o.optimizers.lstm import CoordinatewiseLSTM
from l2o.utils import atomic_write

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
ARCH_KEYS = ("hidden_size", "num_layers", "preprocess_p", "output_scale")


def save_checkpoint(path: str | Path, net: CoordinatewiseLSTM, keep_previous: bool = False, **extra: Any) -> None:
    """Write atomically; with `keep_previous` the file it replaces stays as `<name>.prev.pt`.

    The previous file is copied (not hard-linked: a link would share the inode, so damage to
    `path` in place would damage the fallback too), and `path` itself exists at every moment."""
    path = Path(path)
    if keep_previous and path.exists():
        atomic_write(previous_path(path), lambda fh: fh.write(path.read_bytes()))
    payload = {
        "format_version": FORMAT_VERSION,
        "l2o_version": __version__,
        "net_config": net.config(),
        "net_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        **extra,
    }
    atomic_write(path, lambda fh: torch.save(payload, fh))


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
    p = resolve_checkpoint_path(path)
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise L2OError(
            f"checkpoint {str(p)!r} could not be read as an l2o checkpoint (it was loaded with weights_only=True, "
            f"which refuses arbitrary pickled objects): {first_line}"
        ) from exc
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise L2OError(f"checkpoint {str(p)!r} is not an l2o checkpoint (no format_version).")
    if payload["format_version"] != FORMAT_VERSION:
        raise L2OError(
            f"checkpoint {str(p)!r} has format version {payload['format_version']} "
            f"(written by l2o {payload.get('l2o_version', '?')}); this l2o {__version__} reads version {FORMAT_VERSION}."
        )
    payload["path"] = str(p)
    return payload


def check_architecture(ckpt: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise an error listing every architecture field where `expected` differs from the checkpoint."""
    stored = ckpt["net_config"]
    diffs = [
        f"{k}: config {expected[k]!r} vs checkpoint {stored.get(k)!r}"
        for k in ARCH_KEYS
        if k in expected and _norm(expected[k]) != _norm(stored.get(k))
    ]
    if diffs:
        raise L2OError(
            f"checkpoint {ckpt['path']!r} does not match the configured optimizer architecture ("
            + "; ".join(diffs)
            + "). Drop the optimizer overrides to use the checkpoint's own architecture."
        )


def _norm(v: Any) -> Any:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def net_from_checkpoint(ckpt: dict[str, Any]) -> CoordinatewiseLSTM:
    net = CoordinatewiseLSTM(**ckpt["net_config"])
    try:
        net.load_state_dict(ckpt["net_state"])
    except RuntimeError as exc:
        raise L2OError(f"checkpoint {ckpt.get('path')!r}: weights do not fit its own architecture: {exc}") from exc
    return net
