"""DeepMind-format (.l2l) optimizers: the converted LSTM computes what Sonnet's
CoordinateWiseDeepLSTM computes, and the loader reads only arrays in dicts."""
import collections
import pickle

import numpy as np
import pytest
import torch

from l2o.errors import L2OError
from l2o.layout import Layout
from l2o.optimizers.dm_format import load_l2l, lstm_from_sonnet


def sonnet_variables(rng: np.random.Generator, hidden: int = 5, layers: int = 2) -> dict:
    """Random weights in the layout DM's `networks.save` writes."""
    out, fan_in = {}, 2
    for layer in range(1, layers + 1):
        out[f"lstm_{layer}"] = {"w_gates": rng.normal(0, 0.5, (fan_in + hidden, 4 * hidden)).astype(np.float32),
                                "b_gates": rng.normal(0, 0.5, 4 * hidden).astype(np.float32)}
        fan_in = hidden
    out["linear"] = {"w": rng.normal(0, 0.5, (hidden, 1)).astype(np.float32),
                     "b": rng.normal(0, 0.5, 1).astype(np.float32)}
    return out


def sonnet_step(variables: dict, grad: np.ndarray, state: list, k: float, scale: float):
    """One step of DM's net, written from Sonnet's LSTM and LogAndSign (numpy, float64)."""
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))
    g = grad.astype(np.float64)[:, None]
    x = np.concatenate([np.maximum(np.log(np.abs(g) + np.finfo(np.float32).eps) / k, -1.0),
                        np.clip(g * np.exp(k), -1.0, 1.0)], axis=1)
    new_state = []
    for layer, (h, c) in enumerate(state):
        v = variables[f"lstm_{layer + 1}"]
        gates = np.concatenate([x, h], axis=1) @ v["w_gates"] + v["b_gates"]
        i, j, f, o = np.split(gates, 4, axis=1)
        c = sig(f + 1.0) * c + sig(i) * np.tanh(j)
        h = sig(o) * np.tanh(c)
        new_state.append((h, c))
        x = h
    out = (x @ variables["linear"]["w"] + variables["linear"]["b"]) * scale
    return out[:, 0], new_state


@pytest.mark.parametrize("grad_enabled", [True, False])  # autograd path and the chunked no-grad path
def test_converted_lstm_matches_sonnet(grad_enabled):
    rng = np.random.default_rng(0)
    variables = sonnet_variables(rng)
    net = lstm_from_sonnet(variables, preprocess_p=5.0, output_scale=0.01)
    layout = Layout.build([("x", (12,), "other")])
    state = net.init_state(layout, dtype=torch.float64)
    net = net.double()
    ref_state = [(np.zeros((12, 5)), np.zeros((12, 5))) for _ in range(2)]
    for _ in range(4):
        # magnitudes on both sides of the LogAndSign threshold e^-5
        grad = rng.normal(0, 1, 12) * 10.0 ** rng.uniform(-5, 1, 12)
        ref, ref_state = sonnet_step(variables, grad, ref_state, k=5.0, scale=0.01)
        with torch.set_grad_enabled(grad_enabled):
            upd, state = net.update(torch.from_numpy(grad), state, layout)
        np.testing.assert_allclose(upd.detach().numpy(), ref, rtol=1e-5, atol=1e-9)


def test_l2l_roundtrip_and_refusal(tmp_path):
    variables = sonnet_variables(np.random.default_rng(1), hidden=3, layers=1)
    path = tmp_path / "cw.l2l"
    path.write_bytes(pickle.dumps(collections.defaultdict(dict, variables)))
    loaded = load_l2l(path)
    assert set(loaded) == {"lstm_1", "linear"}
    np.testing.assert_array_equal(loaded["lstm_1"]["w_gates"], variables["lstm_1"]["w_gates"])
    assert lstm_from_sonnet(loaded).config()["num_layers"] == 1

    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    bad = tmp_path / "evil.l2l"
    bad.write_bytes(pickle.dumps({"lstm_1": {"w_gates": Evil()}}))
    with pytest.raises(L2OError, match="refusing"):
        load_l2l(bad)
