"""The per-parameter MLP optimizer (l2o/optimizers/mlp_lopt.py): its inputs against a hand
computation, its starting point (a bounded Adam), scale invariance, the bound on its updates,
coordinatewise pieces, its state size, and a round trip through a checkpoint's config."""
import math

import pytest
import torch

from l2o.errors import L2OError
from l2o.layout import Layout
from l2o.optimizers import LearnedOptimizer, MLPLOpt, build_net


def _layout(n: int) -> Layout:
    return Layout.build([("x", (n,), "other")])


def _run(net: MLPLOpt, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    layout = _layout(grads[0].numel())
    state = net.init_state(layout, dtype=grads[0].dtype)
    out = []
    for step, g in enumerate(grads):
        u, state = net.update(g, state, layout, step=step)
        out.append(u)
    return out


def test_inputs_equal_a_hand_computation():
    net = MLPLOpt(betas=[0.5, 0.9], beta2=0.99, eps=1e-8, time_scales=[10]).double()
    g1, g2 = torch.tensor([0.3, -2.0]).double(), torch.tensor([-0.1, 1.0]).double()
    layout = _layout(2)
    state = net.init_state(layout, dtype=torch.float64)
    _, state = net.inputs(g1, state, 0)
    x, _ = net.inputs(g2, state, 1)
    for k, beta in enumerate((0.5, 0.9)):
        m = beta * (1 - beta) * g1 + (1 - beta) * g2
        v = 0.99 * 0.01 * g1**2 + 0.01 * g2**2
        d = (v / (1 - 0.99**2)).sqrt() + 1e-8
        assert torch.allclose(x[0], g2 / d) and torch.allclose(x[1 + k], m / (1 - beta**2) / d)
    assert torch.allclose(x[3], torch.full((2,), math.tanh(1 / 10 - 1), dtype=torch.float64))


def test_it_starts_as_a_bounded_adam():
    """Before meta-training: update = −output_scale · tanh(m̂/(√v̂ + ε)) at Adam's β1 = 0.9."""
    torch.manual_seed(0)
    grads = [torch.randn(50).double() for _ in range(5)]
    net = MLPLOpt(output_scale=1e-2).double()
    adam_m, adam_v = torch.zeros(50).double(), torch.zeros(50).double()
    for t, (g, u) in enumerate(zip(grads, _run(net, grads)), start=1):
        adam_m = 0.9 * adam_m + 0.1 * g
        adam_v = 0.999 * adam_v + 0.001 * g * g
        direction = (adam_m / (1 - 0.9**t)) / ((adam_v / (1 - 0.999**t)).sqrt() + 1e-8)
        assert torch.allclose(u, -1e-2 * torch.tanh(direction))


def test_updates_are_scale_invariant_and_bounded():
    torch.manual_seed(1)
    net = MLPLOpt(hidden=[8, 8], output_scale=0.1, magnitude_range=2.0).double()
    with torch.no_grad():   # a φ far from its start: big weights everywhere
        for p in net.parameters():
            p.normal_(0, 3.0)
    grads = [torch.randn(200).double() * 10 ** torch.empty(200).uniform_(-4, 4).double() for _ in range(6)]
    small, large = _run(net, grads), _run(net, [g * 1e5 for g in grads])
    for a, b in zip(small, large):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-12)   # ε aside, the gradient's scale does not matter
        assert a.abs().max() <= 0.1 * math.exp(2.0) + 1e-12


@pytest.mark.parametrize("fan_in_ref", [None, 10])
def test_coordinatewise_pieces_and_state_bytes(fan_in_ref):
    """LearnedOptimizer may step it in pieces of any size: the same updates (a large weight goes in
    slices of whole rows, which keep its fan-in); its state is 4 floats per parameter (16 bytes),
    the 2×20 LSTM's is 80."""
    torch.manual_seed(2)
    net = MLPLOpt(fan_in_ref=fan_in_ref).double()   # float64: pieces change only the matmuls' blocking, i.e. rounding
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    models = [torch.nn.Sequential(torch.nn.Linear(30, 40), torch.nn.Tanh(), torch.nn.Linear(40, 5)).double() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [LearnedOptimizer(models[0], net=net), LearnedOptimizer(models[1], net=net, chunk_size=7)]
    x = torch.randn(16, 30, dtype=torch.float64)
    for _ in range(4):
        for model, opt in zip(models, opts):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.allclose(a, b, atol=1e-12), (a - b).abs().max()
    numel = sum(p.numel() for p in models[0].parameters())
    state = sum(v.numel() * v.element_size() for s in opts[0].state.values() for k, v in s.items() if k != "step")
    assert state == 32 * numel   # 4 float64 per parameter
    fp32 = MLPLOpt().init_state(_layout(10), dtype=torch.float32)
    assert sum(v.numel() * v.element_size() for v in fp32.values()) == 16 * 10


def test_wide_layers_take_steps_shrunk_by_fan_in():
    """With fan_in_ref, a tensor whose rows sum over 4× more inputs than fan_in_ref takes 4× smaller
    steps than without it; vectors and narrower weights are untouched. Both paths, two instances."""
    torch.manual_seed(4)
    layout = Layout.build([("w1", (3, 8), "linear_weight"), ("b1", (3,), "linear_bias"),
                           ("w2", (3, 2, 4, 4), "conv_weight")], num_instances=2)   # fan-ins 8, 1, 32
    plain, wide = MLPLOpt().double(), MLPLOpt(fan_in_ref=8).double()
    wide.load_state_dict(plain.state_dict())
    g = torch.randn(layout.size, dtype=torch.float64)
    for grad_enabled in (True, False):
        with torch.set_grad_enabled(grad_enabled):
            ratio = [(net.update(g, net.init_state(layout, dtype=g.dtype), layout)[0]) for net in (wide, plain)]
        ratio = (ratio[0] / ratio[1]).reshape(2, -1)
        assert torch.allclose(ratio[:, : 24 + 3], torch.ones(2, 27, dtype=torch.float64))
        assert torch.allclose(ratio[:, 27:], torch.full((2, 96), 0.25, dtype=torch.float64))


def test_warmup_grows_the_steps_linearly_then_leaves_them_alone():
    """With warmup=W the update at step t is (t+1)/W of the plain one for t < W, the same after;
    in both paths."""
    torch.manual_seed(5)
    layout = Layout.build([("w", (4, 6), "linear_weight"), ("b", (4,), "linear_bias")])
    plain, warm = MLPLOpt().double(), MLPLOpt(warmup=4).double()
    warm.load_state_dict(plain.state_dict())
    g = torch.randn(layout.size, dtype=torch.float64)
    for grad_enabled in (True, False):
        for step, factor in [(0, 0.25), (2, 0.75), (3, 1.0), (50, 1.0)]:
            with torch.set_grad_enabled(grad_enabled):
                a, b = (net.update(g, net.init_state(layout, dtype=g.dtype), layout, step=step)[0] for net in (warm, plain))
            assert torch.allclose(a, factor * b, rtol=1e-12, atol=0)
    with pytest.raises(L2OError, match="optimizer.warmup"):
        MLPLOpt(warmup=0)


@pytest.mark.parametrize("hidden, time_scales", [([8, 4], (100, 1000)), ([], (10,)), ([5], None)])
def test_the_no_grad_path_gives_the_autograd_paths_updates(hidden, time_scales):
    """Outside meta-training the net writes into reused buffers, with biases and step features
    folded into its matmuls; the updates are the same, at any depth, with or without step features."""
    torch.manual_seed(3)
    net = MLPLOpt(hidden=hidden, time_scales=time_scales).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    grads = [torch.randn(300).double() for _ in range(4)]
    with torch.no_grad():
        quiet = _run(net, grads)
        again = _run(net, grads)   # the buffers of the first run are reused
    for a, b, c in zip(_run(net, grads), quiet, again):
        assert torch.allclose(a, b, atol=1e-15) and torch.equal(b, c)


def test_config_round_trip_and_bad_values():
    net = MLPLOpt(hidden=[4], betas=[0.9], time_scales=None, fan_in_ref=64, warmup=10)
    again = build_net(net.full_config())
    again.load_state_dict(net.state_dict())
    g = torch.randn(10)
    assert torch.equal(_run(net, [g])[0], _run(again, [g])[0])
    with pytest.raises(L2OError, match="optimizer.betas\\[0\\]"):
        MLPLOpt(betas=[1.0])
    with pytest.raises(L2OError, match="optimizer.betas is empty"):
        MLPLOpt(betas=[])
    with pytest.raises(L2OError, match="optimizer.fan_in_ref"):
        MLPLOpt(fan_in_ref=0.5)
    with pytest.raises(L2OError, match="optimizer.hidden\\[0\\]"):
        MLPLOpt(hidden=[0])
