import torch

from l2o.optimizees import Quadratic, Simple
from l2o.optimizees.base import ParamSpec, split_seeds


def test_quadratic_batch_gives_each_function_its_own_gradient():
    fam = Quadratic(dim=10)
    batch = fam.sample(split_seeds("train", 6))
    theta = torch.randn(6, 10, requires_grad=True)
    batch.loss(theta, 0).sum().backward()
    for i in range(6):
        one = fam.sample([split_seeds("train", 6)[i]])
        th = theta[i : i + 1].detach().clone().requires_grad_(True)
        loss = one.loss(th, 0)
        loss.backward()
        expected = 2 * one.W[0].T @ (one.W[0] @ th[0].detach() - one.y[0])
        assert torch.allclose(th.grad[0], expected, atol=1e-5)
        assert torch.allclose(theta.grad[i], th.grad[0], atol=1e-5)
        assert torch.allclose(batch.loss(theta, 0)[i], loss[0])


def test_sampling_is_seeded_and_independent_of_batch_composition():
    fam = Quadratic()
    a = fam.sample([5, 7, 9])
    b = fam.sample([9])
    assert torch.equal(a.W[2], b.W[0]) and torch.equal(a.theta0[2], b.theta0[0])
    assert not torch.equal(a.W[0], a.W[1])


def test_distributions():
    g = Quadratic(distribution="gaussian").sample(range(50))
    u = Quadratic(distribution="uniform").sample(range(50))
    assert g.W.min() < 0 and u.W.min() >= 0 and u.W.max() < 1


def test_splits_are_disjoint():
    train = set(split_seeds("train", 10_000))
    val = set(split_seeds("val", 10_000))
    test = set(split_seeds("test", 10_000))
    assert not (train & val) and not (train & test) and not (val & test)


def test_param_spec_names_views_of_the_flat_vector():
    spec = ParamSpec({"w": (2, 3), "b": (3,)})
    flat = torch.arange(18.0).reshape(2, 9)
    parts = spec.unflatten(flat)
    assert spec.numel == 9 and parts["w"].shape == (2, 2, 3) and parts["b"].shape == (2, 3)
    assert parts["b"].data_ptr() == flat[:, 6:].data_ptr()


def test_simple_is_x_squared():
    p = Simple().sample([0, 1])
    assert torch.equal(p.loss(p.init_params(), 0), torch.ones(2))
