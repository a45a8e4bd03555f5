"""Trained optimizers shipped inside the package: `LearnedOptimizer.from_pretrained(NAME, model)`.

Each `NAME.pt` is a slim checkpoint (the architecture and φ, plus provenance: the command that
trained it) written by `python -m l2o.pretrained export CHECKPOINT NAME "NOTE"`;
`l2o/pretrained/README.md` lists them. No network is needed.
"""
from __future__ import annotations

from pathlib import Path

from typing import Any

import torch

from l2o.errors import L2OError
from l2o.optimizers.files import PRETRAINED_DIR as HERE
from l2o.optimizers.files import available, load_checkpoint, net_from_checkpoint, payload
from l2o.optimizers.files import pretrained_path as path_of

__all__ = ["available", "export", "path_of"]


def export(checkpoint: str, name: str, note: str = "", settings: dict[str, Any] | None = None) -> Path:
    """Write `l2o/pretrained/NAME.pt` from a training checkpoint: architecture, φ, what it was
    trained on and `note` (e.g. the evaluation table); no meta-optimizer or RNG state.

    `settings` change fields of the architecture's config that hold no weights, for deployment
    only (e.g. `{"warmup": 30}`: a warm-up the net was not meta-trained with); φ must still fit.
    The file records them, so what was trained and what ships stay told apart."""
    ckpt = load_checkpoint(checkpoint)
    try:
        net = net_from_checkpoint(ckpt, settings)
    except L2OError as exc:
        raise L2OError(f"export: {exc}") from exc
    keep = {k: ckpt[k] for k in ("optimizee", "schedule", "val_loss") if k in ckpt}
    shipped = {"name": name, "note": note, **({"settings": dict(settings)} if settings else {})}
    data = payload(net, **keep, pretrained=shipped)
    out = HERE / f"{name}.pt"
    torch.save(data, out)
    return out

