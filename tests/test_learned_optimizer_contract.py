"""LearnedOptimizer keeps the torch.optim contract users rely on: lr per group (so every
lr scheduler works), several groups of different dtypes, the closure, zero_grad, and a
state_dict round trip in the middle of training that matches an uninterrupted run."""
import copy

import pytest
import torch
from torch import nn

from l2o.errors import L2OError
from l2o.layout import module_entries
from l2o.optimizers import CoordinatewiseLSTM, LearnedOptimizer

X, Y = torch.randn(32, 4, generator=torch.Generator().manual_seed(0)), torch.randn(32, 1, generator=torch.Generator().manual_seed(1))


def _net():
    torch.manual_seed(3)
    net = CoordinatewiseLSTM(hidden_size=8, preprocess_p=10.0, output_scale=0.1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net


def _model():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _loss(model):
    return nn.functional.mse_loss(model(X), Y)


def _train(model, opt, steps, sched=None):
    for _ in range(steps):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
        if sched is not None:
            sched.step()


def _groups(model, lr0=1.0, lr1=0.3):
    return [{"params": model[0].parameters(), "lr": lr0}, {"params": model[2].parameters(), "lr": lr1}]


def test_lr_multiplies_the_learned_update():
    moved = {}
    for lr in (1.0, 0.5):
        model = _model()
        start = [p.detach().clone() for p in model.parameters()]
        opt = LearnedOptimizer(model.parameters(), net=_net(), lr=lr)
        assert all(g["lr"] == lr for g in opt.param_groups)
        _train(model, opt, 1)
        moved[lr] = [p.detach() - s for p, s in zip(model.parameters(), start)]
    for a, b in zip(moved[1.0], moved[0.5]):
        assert a.abs().sum() > 0
        torch.testing.assert_close(b, 0.5 * a)


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12),
    # a learned optimizer has no momentum hyperparameter for OneCycleLR to cycle
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=12, cycle_momentum=False),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("grouped", [False, True])
def test_schedulers_and_a_mid_training_state_dict_round_trip_match_an_uninterrupted_run(name, grouped):
    def build(model):
        opt = LearnedOptimizer(_groups(model) if grouped else model.parameters(), net=_net())
        return opt, SCHEDULERS[name](opt)

    ref_model = _model()
    ref_opt, ref_sched = build(ref_model)
    lrs = []
    for _ in range(12):
        _train(ref_model, ref_opt, 1, ref_sched)
        lrs.append([g["lr"] for g in ref_opt.param_groups])
    assert len({tuple(lr) for lr in lrs}) > 1  # the scheduler really changed lr

    model = _model()
    opt, sched = build(model)
    _train(model, opt, 5, sched)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), sched.state_dict()))
    resumed_model = _model()
    resumed_model.load_state_dict(saved[0])
    resumed_opt, resumed_sched = build(resumed_model)
    resumed_opt.load_state_dict(saved[1])
    resumed_sched.load_state_dict(saved[2])
    _train(resumed_model, resumed_opt, 7, resumed_sched)
    for a, b in zip(resumed_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [g["lr"] for g in resumed_opt.param_groups] == lrs[-1]
    assert all("step" in resumed_opt.state[p] and int(resumed_opt.state[p]["step"]) == 12 for p in resumed_model.parameters())


def test_two_param_groups_are_two_instances_with_their_own_lr():
    model = _model()
    start = [p.detach().clone() for p in model.parameters()]
    opt = LearnedOptimizer(_groups(model, 1.0, 0.3), net=_net())
    _train(model, opt, 1)
    # each group is one instance of the net with its own layout: the first step of group 1 equals
    # a one-group optimizer over those parameters alone, times 0.3
    alone = _model()
    alone_opt = LearnedOptimizer(alone[2].parameters(), net=_net(), lr=0.3)
    _train(alone, alone_opt, 1)
    for (name, p), s, q in zip(model.named_parameters(), start, alone.parameters()):
        if name.startswith("2."):
            torch.testing.assert_close(p.detach(), q.detach())
        assert not torch.equal(p.detach(), s)


def test_groups_of_different_dtypes_use_their_own_copy_of_the_net():
    net = _net()
    a = nn.Parameter(torch.randn(5))
    b = nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = LearnedOptimizer([{"params": [a]}, {"params": [b]}], net=net)
    for _ in range(3):
        opt.zero_grad()
        (a.pow(2).sum() + b.pow(2).sum()).backward()
        opt.step()
    assert opt.state[a]["h0"].dtype == torch.float32 and opt.state[b]["h0"].dtype == torch.float64
    assert opt.net.out_weight.dtype == torch.float32  # the shared net is never converted
    assert {key[1] for key in opt._nets} == {torch.float32, torch.float64}


def test_closure_returns_the_loss_and_equals_backward_then_step():
    m1, m2 = _model(), _model()
    o1, o2 = LearnedOptimizer(m1.parameters(), net=_net()), LearnedOptimizer(m2.parameters(), net=_net())

    def closure():
        o1.zero_grad()
        loss = _loss(m1)
        loss.backward()
        return loss

    loss = o1.step(closure)
    o2.zero_grad()
    expected = _loss(m2)
    expected.backward()
    o2.step()
    assert torch.equal(loss, expected)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b)


def test_zero_grad():
    model = _model()
    opt = LearnedOptimizer(model.parameters(), net=_net())
    _loss(model).backward()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())


def test_passing_the_model_gives_names_and_kinds_and_the_same_plain_update():
    model = _model()
    assert [k for _, _, k in module_entries(model)] == ["linear_weight", "linear_bias"] * 2
    by_model, by_params = _model(), _model()
    _train(by_model, LearnedOptimizer(by_model, net=_net()), 2)
    _train(by_params, LearnedOptimizer(by_params.parameters(), net=_net()), 2)
    for a, b in zip(by_model.parameters(), by_params.parameters()):
        torch.testing.assert_close(a, b)


def test_pretrained_optimizers_ship_with_the_package():
    from l2o.pretrained import available

    assert {"quadratic", "mnist"} <= set(available())
    model = nn.Sequential(nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10))
    x, y = torch.rand(128, 784), torch.randint(0, 10, (128,))
    opt = LearnedOptimizer.from_pretrained("mnist", model)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]  # it trains an MLP like the one it was meta-trained on
    with pytest.raises(L2OError, match="available: .*mnist"):
        LearnedOptimizer.from_pretrained("imagenet", model)
