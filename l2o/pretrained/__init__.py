"""Trained optimizers shipped inside the package: `LearnedOptimizer.from_pretrained(NAME, model)`.

Each `NAME.pt` is a slim checkpoint (the architecture and φ, plus provenance: the command that
trained it) written by `python -m l2o.pretrained export CHECKPOINT NAME "NOTE"`;
`l2o/pretrained/README.md` lists them. No network is needed.
"""
from __future__ import annotations

from pathlib import Path

import torch

from l2o.optimizers.base import build_net
from l2o.optimizers.files import PRETRAINED_DIR as HERE
from l2o.optimizers.files import available, load_checkpoint, payload
from l2o.optimizers.files import pretrained_path as path_of

__all__ = ["available", "export", "path_of"]


def export(checkpoint: str, name: str, note: str = "") -> Path:
    """Write `l2o/pretrained/NAME.pt` from a training checkpoint: architecture, φ, what it was
    trained on and `note` (e.g. the evaluation table); no meta-optimizer or RNG state."""
    ckpt = load_checkpoint(checkpoint)
    net = build_net(ckpt["optimizer"])
    net.load_state_dict(ckpt["optimizer_state"])
    keep = {k: ckpt[k] for k in ("optimizee", "schedule", "val_loss") if k in ckpt}
    data = payload(net, **keep, pretrained={"name": name, "note": note})
    out = HERE / f"{name}.pt"
    torch.save(data, out)
    return out

