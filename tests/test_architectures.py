"""The architectures behind the interface: LSTM+GAC, RNNprop, format-1 checkpoints, and
optimizee state carried through unrolls."""
from pathlib import Path

import pytest
import torch

from conftest import assert_as_recorded
from l2o.checkpoint import load_checkpoint, net_from_checkpoint
from l2o.errors import L2OError
from l2o.layout import Layout
from l2o.meta.unroll import rollout, start, unroll
from l2o.optimizees.base import ParamSpec, Problem
from l2o.optimizers import AdamLSTM, LSTMGAC, LearnedOptimizer, RNNprop

FIXTURES = Path(__file__).parent / "fixtures"


def _randomize(net, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net.double()


def _run(net, grads, layout):
    state = net.init_state(layout, dtype=torch.float64)
    out = []
    for g in grads:
        u, state = net.update(g, state, layout)
        out.append(u)
    return torch.stack(out)


def test_gac_shares_only_within_an_instance_and_only_through_the_averaging_cells():
    layout = Layout.build([("w", (3, 2), "linear_weight"), ("b", (4,), "linear_bias")], num_instances=3)  # D = 10
    grads = [torch.randn(layout.size, dtype=torch.float64) for _ in range(3)]
    changed = [g.clone() for g in grads]
    for g in changed:
        g[12] += 5.0  # coordinate 2 of instance 1
    gac = _randomize(LSTMGAC(hidden_size=8, num_global=3))
    base, moved = _run(gac, grads, layout), _run(gac, changed, layout)
    diff = (base - moved).abs().amax(0).reshape(3, 10)
    assert diff[1, 2] > 0  # the coordinate itself
    assert (diff[1, torch.arange(10) != 2] > 0).all()  # every other coordinate of its instance, via the averages
    assert torch.equal(base.reshape(3, 3, 10)[:, [0, 2]], moved.reshape(3, 3, 10)[:, [0, 2]])  # never other instances
    # without averaging cells the same net is strictly coordinatewise
    plain = _randomize(LSTMGAC(hidden_size=8, num_global=0))
    diff0 = (_run(plain, grads, layout) - _run(plain, changed, layout)).abs().amax(0)
    assert diff0[12] > 0 and torch.count_nonzero(diff0) == 1


def test_gac_averages_are_what_the_docstring_says():
    gac = _randomize(LSTMGAC(hidden_size=4, num_global=2))
    layout = Layout.build([("x", (5,), "other")], num_instances=2)
    h = torch.randn(4, 10, dtype=torch.float64)
    mixed = gac.mix(h, 0, layout)
    assert torch.equal(mixed[:2], h[:2])
    expected = h[2:].reshape(2, 2, 5).mean(-1, keepdim=True).expand(-1, -1, 5).reshape(2, 10)
    assert torch.allclose(mixed[2:], expected)


def test_rnnprop_inputs_equal_a_hand_computation():
    net = RNNprop(beta1=0.95, beta2=0.95, eps=1e-8).double()
    layout = Layout.build([("x", (3,), "other")])
    grads = torch.tensor([[0.5, -2.0, 1e-4], [0.1, -1.0, 3e-4], [-0.3, 0.5, 0.0]], dtype=torch.float64)
    state = net.init_state(layout, dtype=torch.float64)
    m = v = torch.zeros(3, dtype=torch.float64)
    for t, g in enumerate(grads, start=1):
        x, moments = net.inputs(g, state)
        m = 0.95 * m + 0.05 * g
        v = 0.95 * v + 0.05 * g * g
        m_hat, v_hat = m / (1 - 0.95**t), v / (1 - 0.95**t)
        torch.testing.assert_close(x[0], m_hat / (v_hat.sqrt() + 1e-8))
        torch.testing.assert_close(x[1], g / (v_hat.sqrt() + 1e-8))
        _, state = net.update(g, state, layout)
        assert torch.equal(state["m"], moments["m"]) and state["t"].unique().item() == t
    # the inputs are invariant to the gradient's scale, and every update is bounded by the output scale
    _randomize(net)
    u1, u2 = _run(net, grads, layout), _run(net, grads * 1000, layout)
    torch.testing.assert_close(u1, u2, rtol=1e-4, atol=1e-6)
    assert u1.abs().max() <= net.output_scale


def test_untrained_adam_lstm_is_torch_adam_and_its_outputs_reach_phi():
    """Zero output layer: the untrained AdamLSTM steps exactly as torch.optim.Adam at its lr,
    with and without autograd (the chunked path), through LearnedOptimizer too; and the meta-
    gradient reaches both output rows, so φ can learn departures from Adam."""
    torch.manual_seed(0)
    A = torch.randn(6, 6, dtype=torch.float64)
    A = A @ A.T + torch.eye(6, dtype=torch.float64)
    loss_fn = lambda x: 0.5 * x @ A @ x + x.sum()  # noqa: E731
    x0 = torch.randn(6, dtype=torch.float64)

    p = torch.nn.Parameter(x0.clone())
    adam = torch.optim.Adam([p], lr=0.05)
    expected = []
    for _ in range(20):
        adam.zero_grad()
        loss_fn(p).backward()
        adam.step()
        expected.append(p.detach().clone())

    net = AdamLSTM(lr=0.05, hidden_size=6, input_units=4).double()
    net.chunk_size = 4  # the no-grad path splits the 6 coordinates into chunks
    layout = Layout.build([("x", (6,), "other")])
    for grad_enabled in (True, False):
        x, state = x0.clone(), net.init_state(layout, dtype=torch.float64)
        with torch.set_grad_enabled(grad_enabled):
            for want in expected:
                g = torch.func.grad(loss_fn)(x.detach())
                u, state = net.update(g, state, layout)
                x = x + u
                torch.testing.assert_close(x.detach(), want, rtol=1e-10, atol=1e-12)
    q = torch.nn.Parameter(x0.clone())
    opt = LearnedOptimizer([q], net=net)
    for want in expected:
        opt.zero_grad()
        loss_fn(q).backward()
        opt.step()
    torch.testing.assert_close(q.detach(), want, rtol=1e-10, atol=1e-12)

    net = AdamLSTM(lr=0.05, hidden_size=6, input_units=4).double()  # LearnedOptimizer froze the other's φ
    x, state = x0.clone(), net.init_state(layout, dtype=torch.float64)
    total = 0
    for _ in range(5):
        u, state = net.update(torch.func.grad(loss_fn)(x.detach()), state, layout)
        x = x + u
        total = total + loss_fn(x)
    total.backward()
    assert (net.out_weight.grad.abs().sum(1) > 0).all() and (net.out_bias.grad.abs() > 0).all()
    # away from zero the steps depart from Adam's but stay invariant to the gradient's scale
    _randomize(net)
    grads = torch.randn(8, 6, dtype=torch.float64)
    u1 = _run(net, grads, layout)
    torch.testing.assert_close(u1, _run(net, grads * 1000, layout), rtol=1e-4, atol=1e-8)
    assert not torch.allclose(u1, _run(AdamLSTM(lr=0.05, hidden_size=6, input_units=4).double(), grads, layout))
    with pytest.raises(Exception, match="optimizer.lr"):
        AdamLSTM(lr=0.0)


@pytest.mark.parametrize("cls", [RNNprop, AdamLSTM])
def test_step_features_and_odd_updates_work_for_the_other_coordinatewise_nets(cls):
    """`time_scales` and `odd` are not LSTM-only: RNNprop and AdamLSTM take them too. A φ trained
    without step features, fitted with them (init=), steps exactly as before at any step; an odd
    net's update flips sign with the gradient history; the chunked no-grad path equals autograd's."""
    torch.manual_seed(0)
    layout = Layout.build([("w", (37,), "other")])
    plain, timed = cls(), cls(time_scales=[10, 1000])
    timed.load_state_dict(timed.adapt_state_dict(plain.state_dict(), plain.full_config()))
    grads = [torch.randn(37) for _ in range(3)]
    s_plain, s_timed = plain.init_state(layout), timed.init_state(layout)
    for step, g in zip((0, 40, 7000), grads):
        u_plain, s_plain = plain.update(g, s_plain, layout, None, step)
        u_timed, s_timed = timed.update(g, s_timed, layout, None, step)
        assert torch.equal(u_plain, u_timed)
    with torch.no_grad():
        for w in timed.parameters():   # now the features matter: step 0 and step 5,000 differ
            w.normal_(0, 0.5)
        s = timed.init_state(layout)
        assert not torch.allclose(timed.update(grads[0], s, layout, None, 0)[0], timed.update(grads[0], s, layout, None, 5000)[0])
    odd = cls(odd=True, time_scales=[10])
    with torch.no_grad():
        for w in odd.parameters():
            w.normal_(0, 0.5)
    up, down = odd.init_state(layout), odd.init_state(layout)
    for step, g in enumerate(grads):
        with torch.no_grad():
            u_up, up = odd.update(g, up, layout, None, step)
        u_down, down = odd.update(-g, down, layout, None, step)   # autograd path
        assert torch.allclose(u_up, -u_down, atol=1e-6)
    assert cls.from_config(odd.config()).config() == odd.config()


def test_format1_checkpoint_loads_and_gives_identical_updates():
    ckpt = load_checkpoint(FIXTURES / "format1_lstm.pt")
    assert ckpt["optimizer"] == {"_target_": "l2o.optimizers.lstm.CoordinatewiseLSTM", "hidden_size": 8,
                                 "num_layers": 2, "preprocess_p": 10.0, "output_scale": 0.1}
    net = net_from_checkpoint(ckpt).double()
    recorded = torch.load(FIXTURES / "format1_lstm_updates.pt", weights_only=True)
    layout = Layout.build([("x", (50,), "other")])
    updates = _run(net, recorded["grads"], layout)
    assert_as_recorded(updates, recorded["updates"], recorded.get("verified_on_cpu"))
    # and through LearnedOptimizer, as a user loads it
    p = torch.nn.Parameter(torch.zeros(50, dtype=torch.float64))
    opt = LearnedOptimizer([p], checkpoint=FIXTURES / "format1_lstm.pt")
    for g in recorded["grads"]:
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(p.detach(), recorded["updates"].sum(0), rtol=1e-6, atol=1e-9)


class _Counting(Problem):
    """f(θ) = Σ (θ - s)², where s is optimizee state that drifts toward θ each step (like a
    running statistic) and keeps its graph within an unroll."""

    spec = ParamSpec({"x": (2,)})
    num_problems = 2

    def init_params(self):
        return torch.ones(2, 2)

    def init_state(self):
        return {"s": torch.zeros(2, 2), "calls": 0}

    def evaluate(self, params, step, state):
        s = 0.5 * state["s"] + 0.5 * params
        return (params - s).pow(2).sum(-1) + 0.1 * params.pow(2).sum(-1), {"s": s, "calls": state["calls"] + 1}


def test_optimizee_state_is_carried_and_detached_at_truncation():
    net = _randomize(LSTMGAC(hidden_size=4, num_global=0), seed=3).float()
    problem = _Counting()
    carry = start(net, problem)
    assert carry.problem_state["calls"] == 1 and not carry.problem_state["s"].requires_grad
    meta, _, carry = unroll(net, problem, carry, 3, lambda loss, t: loss.mean())
    assert carry.problem_state["calls"] == 4  # carried from step to step
    assert not carry.problem_state["s"].requires_grad and carry.problem_state["s"].grad_fn is None
    assert meta.requires_grad
    losses, _, _ = rollout(net, problem, 5)
    assert losses.shape == (6, 2) and torch.isfinite(losses).all()


def test_stateless_problem_needs_loss_or_evaluate():
    class Empty(Problem):
        spec, num_problems = ParamSpec({"x": (1,)}), 1

        def init_params(self):
            return torch.zeros(1, 1)

    with pytest.raises(NotImplementedError, match="loss\\(\\) or evaluate\\(\\)"):
        Empty().evaluate(torch.zeros(1, 1), 0, None)


def test_odd_wraps_any_coordinatewise_net_as_the_lstm_flag_does():
    """`Odd(net)` (the part) equals the `odd=True` flag of the LSTM family bit for bit, wraps a
    net it knows nothing about, refuses a net that mixes coordinates, and round-trips its config."""
    from l2o.optimizers import CoordinatewiseLSTM
    from l2o.optimizers.base import build_net
    from l2o.optimizers.parts import Odd

    layout = Layout.build([("w", (11,), "other")])
    flag = _randomize(CoordinatewiseLSTM(hidden_size=6, preprocess_p=10.0, odd=True))
    plain = CoordinatewiseLSTM(hidden_size=6, preprocess_p=10.0).double()
    plain.load_state_dict(flag.state_dict())
    grads = torch.randn(4, 11, dtype=torch.float64)
    assert torch.equal(_run(Odd(plain), grads, layout), _run(flag, grads, layout))
    wrapped = build_net(Odd(plain).full_config())
    assert isinstance(wrapped, Odd) and wrapped.net.config() == plain.config()
    with pytest.raises(L2OError, match="coordinatewise"):
        Odd(LSTMGAC())
    with pytest.raises(TypeError, match="declare coordinatewise = False"):
        type("Mixing", (CoordinatewiseLSTM,), {"mix": lambda self, h, layer, layout: h.mean(1, keepdim=True).expand_as(h)})


def test_scaled_gives_any_coordinatewise_net_the_mlps_fan_in_and_warmup_rules():
    """`Scaled(net, fan_in_ref, warmup)` steps as the MLP's own `fan_in_ref` and `warmup` do (on the
    MLP itself, both paths, two instances); both off, it is `net` bit for bit; under
    `LearnedOptimizer` it steps RNNprop in pieces as in one call; it refuses a net that mixes
    coordinates, a bad setting, and round-trips its config."""
    from l2o.optimizers import LearnedOptimizer, MLPLOpt, RNNprop
    from l2o.optimizers.base import build_net
    from l2o.optimizers.parts import Scaled

    layout = Layout.build([("w1", (3, 8), "linear_weight"), ("b1", (3,), "linear_bias"),
                           ("w2", (3, 2, 4, 4), "conv_weight")], num_instances=2)   # fan-ins 8, 1, 32
    own = _randomize(MLPLOpt(fan_in_ref=8, warmup=3))
    plain = MLPLOpt().double()
    plain.load_state_dict(own.state_dict())
    wrapped = Scaled(plain, fan_in_ref=8, warmup=3)
    grads = torch.randn(5, layout.size, dtype=torch.float64)
    for grad_enabled in (True, False):
        with torch.set_grad_enabled(grad_enabled):
            states = [net.init_state(layout, dtype=torch.float64) for net in (own, wrapped)]
            for step, g in enumerate(grads):
                (a, states[0]), (b, states[1]) = (net.update(g, s, layout, step=step) for net, s in zip((own, wrapped), states))
                assert torch.allclose(a, b, rtol=1e-12, atol=0)
    with torch.no_grad():   # at step 0: × 1/3 (warm-up) everywhere, × 8/32 more on the 32-input conv weight
        ratio = (wrapped.update(grads[0], wrapped.init_state(layout, dtype=torch.float64), layout)[0]
                 / plain.update(grads[0], plain.init_state(layout, dtype=torch.float64), layout)[0]).reshape(2, -1)
    assert torch.allclose(ratio[:, :27], torch.full((2, 27), 1 / 3, dtype=torch.float64))
    assert torch.allclose(ratio[:, 27:], torch.full((2, 96), 1 / 12, dtype=torch.float64))
    states = [net.init_state(layout, dtype=torch.float64) for net in (own, wrapped)]
    for step, g in enumerate(grads):   # the in-place path LearnedOptimizer takes
        a, b = (net.update_(g.clone(), s, layout, step=step).clone() for net, s in zip((own, wrapped), states))
        assert torch.allclose(a, b, rtol=1e-12, atol=0)

    rnnprop = _randomize(RNNprop(hidden_size=6))
    assert torch.equal(_run(Scaled(rnnprop), grads, layout), _run(rnnprop, grads, layout))

    net = Scaled(rnnprop, fan_in_ref=10, warmup=2)
    models = [torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Tanh(), torch.nn.Linear(20, 5)).double() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [LearnedOptimizer(models[0], net=net), LearnedOptimizer(models[1], net=net, chunk_size=7)]
    x = torch.randn(16, 30, dtype=torch.float64)
    before = [p.detach().clone() for p in models[0].parameters()]
    for _ in range(3):
        for model, opt in zip(models, opts):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for a, b, p0 in zip(models[0].parameters(), models[1].parameters(), before):
        assert torch.allclose(a, b, atol=1e-12) and not torch.equal(a, p0)

    rebuilt = build_net(net.full_config())
    assert isinstance(rebuilt, Scaled) and rebuilt.config() == net.config() and rebuilt.short_name() == "rnnprop"
    with pytest.raises(L2OError, match="coordinatewise"):
        Scaled(LSTMGAC())
    with pytest.raises(L2OError, match="optimizer.fan_in_ref"):
        Scaled(rnnprop, fan_in_ref=0.5)
    with pytest.raises(L2OError, match="optimizer.warmup"):
        Scaled(rnnprop, warmup=0)
