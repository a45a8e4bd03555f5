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
