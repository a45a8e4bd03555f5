import math

import torch

from l2o.optimizers.preprocess import log_sign, preprocess


def test_large_branch_is_log_over_p_and_sign():
    p = 10.0
    x = torch.tensor([3.0, -0.5, 1e-3, -2e-4])
    out = log_sign(x, p)
    assert torch.allclose(out[0], torch.log(x.abs()) / p)
    assert torch.equal(out[1], torch.sign(x))


def test_small_branch_is_minus_one_and_scaled_value():
    p = 10.0
    x = torch.tensor([1e-6, -3e-7, 0.0, 4e-5])  # all below e^-10 ≈ 4.54e-5
    out = log_sign(x, p)
    assert torch.equal(out[0], torch.full_like(x, -1.0))
    assert torch.allclose(out[1], x * math.exp(p))


def test_boundary_belongs_to_large_branch_and_is_continuous():
    for p in (5.0, 10.0):
        t = math.exp(-p)
        x = torch.tensor([t, -t], dtype=torch.float64)
        out = log_sign(x, p)
        assert torch.allclose(out[0], torch.tensor([-1.0, -1.0], dtype=torch.float64))
        assert torch.equal(out[1], torch.tensor([1.0, -1.0], dtype=torch.float64))
        # just below the boundary the small branch gives (-1, ≈ ±1): no jump
        below = log_sign(x * (1 - 1e-9), p)
        assert torch.allclose(below, out, atol=1e-6)


def test_authors_formulation_agrees_away_from_boundary():
    k = 5.0
    x = torch.randn(1000, dtype=torch.float64) * torch.logspace(-6, 2, 1000, dtype=torch.float64)
    ours = log_sign(x, k)
    theirs0 = torch.clamp(torch.log(x.abs() + 1e-30) / k, min=-1.0)
    theirs1 = torch.clamp(x * math.exp(k), -1.0, 1.0)
    large = x.abs() >= math.exp(-k)
    assert torch.allclose(ours[0], theirs0)
    assert torch.allclose(ours[1][~large], theirs1[~large])
    assert torch.equal(ours[1][large], theirs1[large])


def test_none_is_raw_gradient_and_gradient_is_finite_at_zero():
    x = torch.tensor([0.0, 2.0], requires_grad=True)
    assert torch.equal(preprocess(x, None)[0], x)
    log_sign(x, 10.0).sum().backward()
    assert torch.isfinite(x.grad).all()
