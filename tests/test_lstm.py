import pytest
import torch

from l2o.errors import L2OError
from l2o.layout import Layout
from l2o.optimizers.lstm import CoordinatewiseLSTM


def flat(n):
    """The layout of one instance with one tensor of n coordinates."""
    return Layout.build([("x", (n,), "other")])


def _net(p=10.0, layers=2):
    net = CoordinatewiseLSTM(hidden_size=8, num_layers=layers, preprocess_p=p, output_scale=0.1)
    with torch.no_grad():  # the zero-initialised output layer would make every test trivial
        net.out_weight.normal_()
        net.out_bias.normal_()
    return net.double()


def _run(net, grads):
    layout = flat(grads[0].numel())
    state = net.init_state(layout, dtype=torch.float64)
    outs = []
    for g in grads:
        u, state = net(g, state, layout)
        outs.append(u)
    return torch.stack(outs)


@pytest.mark.parametrize("p", [None, 10.0])
def test_permuting_coordinates_permutes_updates(p):
    net = _net(p)
    grads = [torch.randn(50, dtype=torch.float64) for _ in range(4)]
    perm = torch.randperm(50)
    out = _run(net, grads)
    out_perm = _run(net, [g[perm] for g in grads])
    assert torch.allclose(out[:, perm], out_perm, atol=1e-12)


def test_update_of_one_coordinate_ignores_other_gradients():
    net = _net()
    grads = [torch.randn(20, dtype=torch.float64) for _ in range(3)]
    changed = [g.clone() for g in grads]
    for g in changed:
        g[1:] = torch.randn(19, dtype=torch.float64) * 100
    assert torch.equal(_run(net, grads)[:, 0], _run(net, changed)[:, 0])
    # and the Jacobian of one step is diagonal
    x = torch.randn(6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda g: net(g, net.init_state(flat(6), dtype=torch.float64), flat(6))[0], x)
    assert torch.count_nonzero(jac - torch.diag(torch.diagonal(jac))) == 0


def test_shapes_and_state_layout_are_feature_major():
    net = CoordinatewiseLSTM(hidden_size=20, num_layers=2)
    g = torch.randn(3, 7)
    u, state = net(g.reshape(-1), net.init_state(flat(21)), flat(21))
    assert u.shape == (21,)
    assert list(state) == ["h0", "c0", "h1", "c1"] and all(s.shape == (20, 21) and s.is_contiguous() for s in state.values())


def test_linear_net_has_no_state():
    net = CoordinatewiseLSTM(num_layers=0, preprocess_p=None)
    u, state = net(torch.ones(5), net.init_state(flat(5)), flat(5))
    assert state == {} and u.shape == (5,)


@pytest.mark.parametrize("kw", [{"num_layers": -1}, {"hidden_size": 0}, {"preprocess_p": -3.0}])
def test_bad_architecture_is_a_clear_error(kw):
    with pytest.raises(L2OError):
        CoordinatewiseLSTM(**kw)


def _odd_net(p=10.0, cls=CoordinatewiseLSTM, **kw):
    net = cls(hidden_size=8, num_layers=2, preprocess_p=p, output_scale=0.1, odd=True, **kw)
    with torch.no_grad():
        net.out_weight.normal_()
        net.out_bias.normal_()
    return net.double()


@pytest.mark.parametrize("p", [None, 10.0])
def test_odd_update_flips_sign_with_the_gradient_history(p):
    net = _odd_net(p)
    grads = [torch.randn(30, dtype=torch.float64) for _ in range(5)]
    out = _run(net, grads)
    assert torch.allclose(_run(net, [-g for g in grads]), -out, atol=1e-14)
    assert out.abs().min() > 0  # not odd by being zero


def test_odd_update_never_moves_a_coordinate_whose_gradient_is_always_zero():
    grads = [torch.randn(10, dtype=torch.float64) for _ in range(6)]
    for g in grads:
        g[:4] = 0.0
    assert torch.all(_run(_odd_net(), grads)[:, :4] == 0)
    # without the symmetry the net's biases move them: the drift `odd` removes
    assert torch.all(_run(_net(), grads)[:, :4] != 0)


def test_odd_update_is_still_coordinatewise_and_keeps_one_state_per_stream():
    net = _odd_net()
    grads = [torch.randn(12, dtype=torch.float64) for _ in range(3)]
    changed = [g.clone() for g in grads]
    for g in changed:
        g[1:] = torch.randn(11, dtype=torch.float64)
    assert torch.equal(_run(net, grads)[:, 0], _run(net, changed)[:, 0])
    state = net.init_state(flat(12), dtype=torch.float64)
    assert sorted(state) == sorted(["h0", "c0", "h1", "c1"] + [f"mirror.{k}" for k in ("h0", "c0", "h1", "c1")])
    # without autograd (evaluation) the chunked path gives the autograd path's updates
    net.chunk_size = 5
    with_autograd = _run(net, grads).detach()
    with torch.no_grad():
        assert torch.allclose(_run(net, grads), with_autograd, atol=1e-14)


def test_odd_gac_flips_sign_too():
    from l2o.optimizers.gac import LSTMGAC
    net = _odd_net(cls=LSTMGAC, num_global=2)
    grads = [torch.randn(30, dtype=torch.float64) for _ in range(4)]
    assert torch.allclose(_run(net, [-g for g in grads]), -_run(net, grads), atol=1e-14)


def test_odd_must_be_a_bool():
    with pytest.raises(L2OError, match="odd"):
        CoordinatewiseLSTM(odd="yes")


def test_a_checkpoint_written_before_odd_existed_matches_its_default():
    from l2o.checkpoint import architecture_diffs
    stored = {"_target_": "l2o.optimizers.CoordinatewiseLSTM", "hidden_size": 20, "num_layers": 2,
              "preprocess_p": 10.0, "output_scale": 0.1}
    assert architecture_diffs(stored, {**stored, "odd": False}) == []
    assert architecture_diffs(stored, {**stored, "odd": True}) == ["optimizer.odd: config True vs checkpoint None"]
    assert architecture_diffs({**stored, "odd": True}, {**stored, "odd": False}) == [
        "optimizer.odd: config False vs checkpoint True"]
    # a field the class does not have is still a difference
    assert architecture_diffs(stored, {**stored, "extra": 1}) == ["optimizer.extra: config 1 vs checkpoint None"]


def test_init_may_start_an_odd_run_from_a_phi_trained_without_it(tmp_path):
    from omegaconf import OmegaConf

    from l2o.checkpoint import save_checkpoint
    from l2o.cli.train import _init_from
    plain = _net().float()
    save_checkpoint(tmp_path / "plain.pt", plain)
    odd = CoordinatewiseLSTM(hidden_size=8, num_layers=2, preprocess_p=10.0, output_scale=0.1, odd=True)
    _init_from(OmegaConf.create({"init": str(tmp_path / "plain.pt")}), odd)
    assert all(torch.equal(a, b) for a, b in zip(odd.state_dict().values(), plain.state_dict().values()))
    with pytest.raises(L2OError, match="hidden_size"):  # other fields still have to match
        _init_from(OmegaConf.create({"init": str(tmp_path / "plain.pt")}), CoordinatewiseLSTM(hidden_size=4, odd=True))


def _timed_net(scales=(10.0, 100.0)):
    net = CoordinatewiseLSTM(hidden_size=8, num_layers=2, preprocess_p=10.0, output_scale=0.1, time_scales=scales)
    with torch.no_grad():
        net.out_weight.normal_()
        net.out_bias.normal_()
    return net.double()


def _step_at(net, g, step):
    layout = flat(g.numel())
    return net(g, net.init_state(layout, dtype=torch.float64), layout, step=step)[0]


def test_time_features_are_tanh_of_step_over_each_scale():
    net = _timed_net((10.0, 100.0))
    rows = net.step_features(50, torch.zeros(1, 3, dtype=torch.float64))
    want = torch.tanh(torch.tensor([50 / 10 - 1, 50 / 100 - 1], dtype=torch.float64))
    assert rows.shape == (2, 3) and torch.allclose(rows, want[:, None].expand(2, 3))


def test_time_features_let_the_same_gradient_and_state_step_differently_late_in_a_run():
    net = _timed_net()
    g = torch.randn(9, dtype=torch.float64)
    early, late = _step_at(net, g, 0), _step_at(net, g, 5000)
    assert not torch.allclose(early, late)
    # still coordinatewise: permuting the coordinates permutes the updates at any step
    perm = torch.randperm(9)
    assert torch.allclose(_step_at(net, g[perm], 5000), late[perm], atol=1e-12)
    # and the chunked evaluation path (no autograd) gives the autograd path's updates
    net.chunk_size = 4
    with torch.no_grad():
        assert torch.allclose(_step_at(net, g, 5000), late.detach(), atol=1e-14)


def test_a_phi_without_time_features_starts_a_net_with_them_unchanged():
    old = _net()
    new = _timed_net((10.0, 100.0, 1000.0))
    stored = old.full_config()
    assert stored["time_scales"] is None  # the constructor's default, so checkpoints older than it compare equal
    new.load_state_dict(new.adapt_state_dict(old.state_dict(), stored))
    assert torch.count_nonzero(new.weights[0][:, 8 + 2:8 + 5]) == 0
    grads = [torch.randn(11, dtype=torch.float64) for _ in range(3)]
    for step in (0, 40, 7000):
        assert torch.allclose(_step_at(new, grads[0], step), _step_at(old, grads[0], step), atol=1e-14)
    # the new inputs' weights get a meta-gradient, so training can move them
    _step_at(new, grads[1], 300).pow(2).sum().backward()
    assert new.weights[0].grad[:, 8 + 2:8 + 5].abs().sum() > 0


@pytest.mark.parametrize("bad", [[0.0], [-5], ["soon"], [float("inf")]])
def test_time_scales_must_be_positive_numbers(bad):
    with pytest.raises(L2OError, match="time_scales"):
        CoordinatewiseLSTM(time_scales=bad)
