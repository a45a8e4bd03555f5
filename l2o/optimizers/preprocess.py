"""Gradient preprocessing of the paper's Appendix A.

Gradients span many orders of magnitude; the LSTM sees (log|x|/p, sign x) for
|x| >= e^-p, and (-1, e^p x) below, a pair that is continuous at |x| = e^-p.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def log_sign(x: Tensor, p: float) -> Tensor:
    """Stack the two preprocessed features along a new leading axis: (2, *x.shape)."""
    threshold = math.exp(-p)
    magnitude = x.abs()
    large = magnitude >= threshold
    # clamp keeps log finite on the branch that torch.where discards (and its gradient 0)
    log_part = torch.where(large, torch.log(magnitude.clamp_min(threshold)) / p, torch.full_like(x, -1.0))
    sign_part = torch.where(large, torch.sign(x), x * math.exp(p))
    return torch.stack((log_part, sign_part))


def preprocess(x: Tensor, p: float | None) -> Tensor:
    """(features, *x.shape): the log/sign pair, or the raw gradient as one feature when p is None."""
    if p is None:
        return x.unsqueeze(0)
    return log_sign(x, p)
