"""Truncated BPTT semantics: detach between unrolls, gradient treated as a constant."""
import torch

from l2o.meta.unroll import Carry, rollout, start, unroll
from l2o.optimizees import Quadratic
from l2o.optimizees.base import ParamSpec, Problem, split_seeds
from l2o.optimizers.lstm import CoordinatewiseLSTM


def _net(layers=2):
    net = CoordinatewiseLSTM(hidden_size=6, num_layers=layers, preprocess_p=None, output_scale=0.1).double()
    with torch.no_grad():
        net.out_weight.normal_()
    return net


def _problem(n=3):
    p = Quadratic(dim=4).sample(split_seeds("train", n))
    p.W, p.y, p.theta0 = p.W.double(), p.y.double(), p.theta0.double()
    return p


def test_truncation_detaches_everything_from_the_previous_unroll():
    net, problem = _net(), _problem()
    w = lambda loss, t: loss.mean()  # noqa: E731
    c0 = start(net, problem)
    _, _, c1 = unroll(net, problem, c0, 5, w)
    for t in (c1.params, c1.grad, c1.loss, *c1.state.values()):
        assert not t.requires_grad and t.grad_fn is None
    meta2, _, _ = unroll(net, problem, c1, 5, w)
    g_carried = torch.autograd.grad(meta2, list(net.parameters()))
    # the same second unroll from fresh constants with the same values: identical meta-gradient,
    # so no gradient flows into φ from before the current unroll
    fresh = Carry(c1.params.clone(), c1.grad.clone(), c1.loss.clone(), {k: s.clone() for k, s in c1.state.items()}, c1.step)
    meta2b, _, _ = unroll(net, problem, fresh, 5, w)
    g_fresh = torch.autograd.grad(meta2b, list(net.parameters()))
    for a, b in zip(g_carried, g_fresh):
        assert torch.equal(a, b)


def test_meta_gradient_treats_optimizee_gradient_as_constant():
    """Linear net g = a·∇ + b on f(θ) = (wθ - y)², two steps, meta-loss f(θ1) + f(θ2)."""

    class Tiny(Problem):
        spec = ParamSpec({"theta": (1,)})
        num_problems = 1

        def init_params(self):
            return torch.tensor([[0.3]], dtype=torch.float64)

        def loss(self, params, step):
            return (w * params - y).pow(2).sum(-1)

    w, y = 1.7, 0.4
    net = CoordinatewiseLSTM(num_layers=0, preprocess_p=None, output_scale=1.0).double()
    a, b = -0.2, 0.05
    with torch.no_grad():
        net.out_weight.fill_(a)
        net.out_bias.fill_(b)

    df = lambda th: 2 * w * (w * th - y)  # noqa: E731
    f = lambda th: (w * th - y) ** 2  # noqa: E731
    th0 = 0.3
    g0 = df(th0)
    th1 = th0 + a * g0 + b
    g1 = df(th1)
    th2 = th1 + a * g1 + b
    # ∇ held constant: dθ1/da = g0, dθ2/da = g0 + g1; dθ1/db = 1, dθ2/db = 2
    first_order = (df(th1) * g0 + df(th2) * (g0 + g1), df(th1) * 1 + df(th2) * 2)
    # with second derivatives: dg1/da = 2w²·g0 and dg1/db = 2w², so dθ2 also moves through ∇
    second_order = (df(th1) * g0 + df(th2) * (g0 + g1 + a * 2 * w * w * g0), df(th1) + df(th2) * (2 + a * 2 * w * w))
    assert abs(f(th1) + f(th2) - 0.0) > 1e-6 and abs(first_order[1]) > 1e-6   # the meta-loss is not flat here

    for second, expected in ((False, first_order), (True, second_order)):
        problem = Tiny()
        meta, _, _ = unroll(net, problem, start(net, problem), 2, lambda loss, t: loss.mean(), second)
        ga, gb = torch.autograd.grad(meta, [net.out_weight, net.out_bias])
        assert abs(ga.item() - expected[0]) < 1e-10 and abs(gb.item() - expected[1]) < 1e-10
    assert abs(first_order[0] - second_order[0]) > 1e-3  # the two settings really differ here


def test_rollout_records_initial_and_every_step():
    net, problem = _net(), _problem(5)
    losses, _, _ = rollout(net, problem, 7)
    assert losses.shape == (8, 5)
    assert torch.allclose(losses[0], problem.loss(problem.init_params(), 0))
