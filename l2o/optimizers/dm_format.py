"""Optimizers saved by the DeepMind `learning-to-learn` code and its descendants (Chen et al.
2020, "Training stronger baselines for learning to optimize"): `*.l2l` files, a pickled
{layer: {variable: ndarray}} dict of a Sonnet `CoordinateWiseDeepLSTM`.

Loading one into our `CoordinatewiseLSTM` lets a published φ be evaluated on l2o's test
problems next to ours, with the same baselines, which separates "the recipe" from "the
evaluation" when the two disagree. The files were written with `dill`; a small allowlisting
unpickler reads them without it and refuses any other global.

Sonnet's LSTM computes gates [i, j, f, o] = [x, h] @ w_gates + b_gates with forget bias +1 and
cell input tanh(j); ours stores one (4H, H + in + 1) matrix per layer with rows (i, f, o, g),
columns [h; x; 1] and no forget bias, so the conversion permutes and transposes, and folds the
+1 into the bias column. The DM LogAndSign preprocessing (log clamped at -1, sign·e^k clamped to
±1) equals ours with p = k.
"""
from __future__ import annotations

import collections
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2o.errors import L2OError
from l2o.optimizers.lstm import CoordinatewiseLSTM

SONNET_FORGET_BIAS = 1.0

_DILL = "dill._dill"


class _L2LUnpickler(pickle.Unpickler):
    """Maps the few globals a DM `.l2l` pickle references (dill's helpers for dict types and
    module lookups, numpy's array constructors) to what rebuilds them; any other is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "defaultdict"):
            return collections.defaultdict
        if (module, name) == ("builtins", "dict"):  # defaultdict(dict), pickled without dill
            return dict
        if (module, name) == (_DILL, "_load_type"):
            return {"dict": dict, "list": list, "tuple": tuple}.__getitem__
        if (module, name) == (_DILL, "_import_module"):
            return _import_numpy_module
        if (module, name) == (_DILL, "_get_attr"):
            return _numpy_attr
        if module.split(".")[0] == "numpy" and name in ("ndarray", "dtype", "_reconstruct"):
            return _numpy_attr(None, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a .l2l file (only numpy arrays in dicts)")


def _import_numpy_module(name: str) -> str:
    if name.split(".")[0] != "numpy":
        raise pickle.UnpicklingError(f"refusing to import {name!r} from a .l2l file")
    return name


def _numpy_attr(_module: Any, name: str) -> Any:
    if name == "_reconstruct":  # numpy.core.multiarray._reconstruct (numpy 1), numpy._core's (numpy 2)
        try:
            return importlib.import_module("numpy._core.multiarray")._reconstruct
        except ImportError:
            return importlib.import_module("numpy.core.multiarray")._reconstruct
    allowed = {"ndarray": np.ndarray, "dtype": np.dtype}
    if name not in allowed:
        raise pickle.UnpicklingError(f"refusing to load numpy.{name} from a .l2l file")
    return allowed[name]


def load_l2l(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """The {layer: {variable: array}} dict of a DM-format `.l2l` file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = _L2LUnpickler(fh).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise L2OError(f"{str(path)!r} could not be read as a DeepMind-format .l2l optimizer: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise L2OError(f"{str(path)!r} is not a .l2l optimizer ({{layer: {{variable: array}}}} expected).")
    return {str(k): {str(n): np.asarray(a) for n, a in v.items()} for k, v in data.items()}


def lstm_from_sonnet(variables: dict[str, dict[str, np.ndarray]], preprocess_p: float | None = 5.0,
                     output_scale: float = 0.01) -> CoordinatewiseLSTM:
    """Our LSTM with the φ of a Sonnet `CoordinateWiseDeepLSTM` (layers `lstm_1`, `lstm_2`, ...,
    then `linear`). The DM code's defaults: LogAndSign with k = 5, output scale 0.01."""
    layers = sorted((k for k in variables if k.startswith("lstm_")), key=lambda k: int(k.split("_")[1]))
    if "linear" not in variables or not layers:
        raise L2OError(f"not a CoordinateWiseDeepLSTM: layers {sorted(variables)} (expected lstm_1.. and linear).")
    hidden = variables[layers[0]]["b_gates"].shape[0] // 4
    net = CoordinatewiseLSTM(hidden_size=hidden, num_layers=len(layers), preprocess_p=preprocess_p,
                             output_scale=output_scale)
    with torch.no_grad():
        for layer, key in enumerate(layers):
            w, b = variables[key]["w_gates"], variables[key]["b_gates"]
            n_in = w.shape[0] - hidden
            expected = (4 * hidden, hidden + n_in + 1)
            if tuple(net.weights[layer].shape) != expected:
                raise L2OError(f"{key}: w_gates {w.shape} gives a layer of {expected}, but layer {layer} "
                               f"of the LSTM is {tuple(net.weights[layer].shape)} (input features differ?).")
            i, j, f, o = np.split(w, 4, axis=1)
            bi, bj, bf, bo = np.split(b, 4)
            rows = []
            for gw, gb in ((i, bi), (f, bf + SONNET_FORGET_BIAS), (o, bo), (j, bj)):
                # Sonnet's rows are [x; h]; ours are [h; x; 1]
                rows.append(np.concatenate([gw[n_in:].T, gw[:n_in].T, gb[:, None]], axis=1))
            net.weights[layer].copy_(torch.from_numpy(np.concatenate(rows, axis=0)))
        lw, lb = variables["linear"]["w"], variables["linear"]["b"]
        if lw.shape != (hidden, 1):
            raise L2OError(f"linear: w {lw.shape}, expected ({hidden}, 1) for a coordinatewise output.")
        net.out_weight.copy_(torch.from_numpy(lw.T.copy()))
        net.out_bias.copy_(torch.from_numpy(lb.reshape(1, 1).copy()))
    return net
