"""LearnedOptimizer keeps the torch.optim contract users rely on: lr per group (so every
lr scheduler works), several groups of different dtypes, the closure, zero_grad, and a
state_dict round trip in the middle of training that matches an uninterrupted run.

The net is a small CoordinatewiseLSTM with random φ (its output layer starts at zero, which
would make every update zero and every comparison below trivially true)."""
import copy
import math

import pytest
import torch
from torch import nn

from l2o.errors import L2OError
from l2o.layout import module_entries
from l2o.optimizers import CoordinatewiseLSTM, LearnedOptimizer

from conftest import assert_as_recorded, train_losses

X = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
Y = torch.randn(32, 1, generator=torch.Generator().manual_seed(1))
ATOL = 1e-6


def _net(cls=CoordinatewiseLSTM):
    torch.manual_seed(3)
    net = cls(hidden_size=8, preprocess_p=10.0, output_scale=0.1)
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
    return [{"params": list(model[0].parameters()), "lr": lr0}, {"params": list(model[2].parameters()), "lr": lr1}]


def _assert_same(params_a, params_b):
    params_a, params_b = list(params_a), list(params_b)
    assert len(params_a) == len(params_b)
    for a, b in zip(params_a, params_b):
        assert torch.allclose(a.detach(), b.detach(), atol=ATOL), (a - b).abs().max()


def _moved(model, start):
    return [p.detach() - s for p, s in zip(model.parameters(), start)]


# 1 -----------------------------------------------------------------------------------------
def test_lr_defaults_to_one_and_multiplies_the_learned_update():
    model = _model()
    default = LearnedOptimizer(model.parameters(), net=_net())
    assert [g["lr"] for g in default.param_groups] == [1.0]
    grouped = LearnedOptimizer([{"params": list(model[0].parameters())}, {"params": list(model[2].parameters())}],
                               net=_net())
    assert [g["lr"] for g in grouped.param_groups] == [1.0, 1.0]  # groups without lr get the default

    moved = {}
    for lr in (None, 0.5):
        model = _model()
        start = [p.detach().clone() for p in model.parameters()]
        opt = LearnedOptimizer(model.parameters(), net=_net(), **({} if lr is None else {"lr": lr}))
        _train(model, opt, 1)
        moved[lr] = _moved(model, start)
    for full, half in zip(moved[None], moved[0.5]):
        assert full.abs().min() > 0  # every coordinate moved: the comparison is not 0 == 0
        torch.testing.assert_close(half, 0.5 * full)


# 2, and 3's round trip ---------------------------------------------------------------------
SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "CosineAnnealingLR": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12),
    # a learned optimizer has no momentum hyperparameter for OneCycleLR to cycle
    "OneCycleLR": lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=12, cycle_momentum=False),
}
STEPS, INTERRUPT_AT = 12, 5


@pytest.mark.parametrize("name", list(SCHEDULERS))
@pytest.mark.parametrize("grouped", [False, True], ids=["one_group", "two_groups"])
def test_schedulers_and_a_mid_training_state_dict_round_trip_match_an_uninterrupted_run(name, grouped):
    def build(model, cls=LearnedOptimizer, **kw):
        opt = cls(_groups(model) if grouped else model.parameters(), **kw)
        return opt, SCHEDULERS[name](opt)

    # the same scheduler on torch's SGD gives the lr each group must have at every step
    sgd, sgd_sched = build(_model(), torch.optim.SGD, lr=1.0)
    expected_lrs = []
    for _ in range(STEPS):
        expected_lrs.append([g["lr"] for g in sgd.param_groups])
        sgd.step()
        sgd_sched.step()

    ref_model = _model()
    ref_opt, ref_sched = build(ref_model, net=_net())
    lrs = []
    for _ in range(STEPS):
        lrs.append([g["lr"] for g in ref_opt.param_groups])  # the lr this step is taken with
        _train(ref_model, ref_opt, 1, ref_sched)
    assert torch.allclose(torch.tensor(lrs, dtype=torch.float64), torch.tensor(expected_lrs, dtype=torch.float64))
    assert len({tuple(lr) for lr in lrs}) > 2  # the scheduler really changed lr

    model = _model()
    opt, sched = build(model, net=_net())
    _train(model, opt, INTERRUPT_AT, sched)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), sched.state_dict()))
    del model, opt, sched
    resumed_model = _model()  # a fresh model at the initial parameters, then the saved ones
    resumed_model.load_state_dict(saved[0])
    resumed_opt, resumed_sched = build(resumed_model, net=_net())
    resumed_opt.load_state_dict(saved[1])
    resumed_sched.load_state_dict(saved[2])
    assert [g["lr"] for g in resumed_opt.param_groups] == pytest.approx(lrs[INTERRUPT_AT])
    _train(resumed_model, resumed_opt, STEPS - INTERRUPT_AT, resumed_sched)

    _assert_same(resumed_model.parameters(), ref_model.parameters())
    assert [g["lr"] for g in resumed_opt.param_groups] == pytest.approx([g["lr"] for g in ref_opt.param_groups])
    for p in resumed_model.parameters():
        assert int(resumed_opt.state[p]["step"]) == STEPS


def test_a_round_trip_without_the_optimizer_state_would_differ():
    """The round trip above is a real check: restarting the net's state mid-training changes
    the result, so a state_dict that lost the per-parameter state would fail it."""
    ref = _model()
    _train(ref, LearnedOptimizer(ref.parameters(), net=_net()), STEPS)
    model = _model()
    _train(model, LearnedOptimizer(model.parameters(), net=_net()), INTERRUPT_AT)
    _train(model, LearnedOptimizer(model.parameters(), net=_net()), STEPS - INTERRUPT_AT)  # fresh state
    assert not all(torch.allclose(a, b, atol=ATOL) for a, b in zip(model.parameters(), ref.parameters()))


# 3 -----------------------------------------------------------------------------------------
def test_two_param_groups_have_their_own_lr_and_per_parameter_state():
    model = _model()
    opt = LearnedOptimizer(_groups(model, 1.0, 0.3), net=_net())
    _train(model, opt, 3)
    # The net is coordinatewise, so each group must move exactly as a one-group optimizer over
    # its parameters alone with that group's lr (the other layer held still: the same gradients).
    first = _model()
    _train(first, LearnedOptimizer(_groups(first, 1.0, 0.3), net=_net()), 1)
    for index, lr in ((0, 1.0), (2, 0.3)):
        alone = _model()
        _train(alone, LearnedOptimizer(alone[index].parameters(), net=_net(), lr=lr), 1)
        _assert_same(first[index].parameters(), alone[index].parameters())
    # and lr 0.3 really is applied to the second group: with lr 1.0 it moves 1/0.3 times as far
    a, b = _model(), _model()
    start = [p.detach().clone() for p in a.parameters()]
    _train(a, LearnedOptimizer(_groups(a, 1.0, 0.3), net=_net()), 1)
    _train(b, LearnedOptimizer(_groups(b, 1.0, 1.0), net=_net()), 1)
    for da, db in zip(_moved(a, start)[2:], _moved(b, start)[2:]):
        torch.testing.assert_close(da, 0.3 * db)

    # state per parameter, for every parameter, sized to its own coordinates
    params = list(model.parameters())
    assert set(opt.state) == set(params)
    for p in params:
        state = opt.state[p]
        assert int(state["step"]) == 3
        assert {"h0", "c0", "h1", "c1"} <= set(state)
        assert all(state[k].shape == (8, p.numel()) for k in ("h0", "c0", "h1", "c1"))
    assert [len(g["params"]) for g in opt.state_dict()["param_groups"]] == [2, 2]
    assert [g["lr"] for g in opt.state_dict()["param_groups"]] == [1.0, 0.3]


# 4 -----------------------------------------------------------------------------------------
def test_groups_of_different_dtypes_both_step_and_the_net_keeps_its_dtype():
    net = _net()
    before = {k: (v.dtype, v.data_ptr(), v.detach().clone()) for k, v in net.state_dict().items()}
    a = nn.Parameter(torch.randn(5, generator=torch.Generator().manual_seed(4)))
    b = nn.Parameter(torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)))
    a0, b0 = a.detach().clone(), b.detach().clone()
    opt = LearnedOptimizer([{"params": [a]}, {"params": [b]}], net=net)
    for _ in range(3):
        opt.zero_grad()
        (a.pow(2).sum() + b.pow(2).sum()).backward()
        opt.step()
        # the shared net is never converted (no float64 round trip through it)
        assert opt.net is net
        for k, v in net.state_dict().items():
            assert (v.dtype, v.data_ptr()) == before[k][:2], k
            assert torch.equal(v, before[k][2]), k
    assert a.dtype == torch.float32 and b.dtype == torch.float64
    assert (a.detach() - a0).abs().min() > 0 and (b.detach() - b0).abs().min() > 0
    assert opt.state[a]["h0"].dtype == torch.float32 and opt.state[b]["h0"].dtype == torch.float64

    # each group as a one-group optimizer on its own gives the same parameters
    for p0, p, dtype in ((a0, a, torch.float32), (b0, b, torch.float64)):
        q = nn.Parameter(p0.clone())
        opt_q = LearnedOptimizer([q], net=_net())
        for _ in range(3):
            opt_q.zero_grad()
            q.pow(2).sum().backward()
            opt_q.step()
        assert q.dtype == dtype
        torch.testing.assert_close(q.detach(), p.detach())
    # the float64 group really ran in float64: a float32 computation differs from it
    c = nn.Parameter(b0.float().clone())
    opt_c = LearnedOptimizer([c], net=_net())
    for _ in range(3):
        opt_c.zero_grad()
        c.pow(2).sum().backward()
        opt_c.step()
    assert not torch.equal(c.detach().double(), b.detach())


# 5 -----------------------------------------------------------------------------------------
def test_closure_returns_the_loss_and_equals_backward_then_step():
    m1, m2 = _model(), _model()
    o1, o2 = LearnedOptimizer(m1.parameters(), net=_net()), LearnedOptimizer(m2.parameters(), net=_net())
    calls = []

    def closure():
        calls.append(1)
        o1.zero_grad()
        loss = _loss(m1)
        loss.backward()
        return loss

    for _ in range(3):
        loss = o1.step(closure)
        o2.zero_grad()
        expected = _loss(m2)
        expected.backward()
        assert o2.step() is None
        assert isinstance(loss, torch.Tensor) and torch.equal(loss, expected)
        _assert_same(m1.parameters(), m2.parameters())
    assert len(calls) == 3  # called once per step


# 6 -----------------------------------------------------------------------------------------
def test_zero_grad():
    model = _model()
    opt = LearnedOptimizer(model.parameters(), net=_net())
    _loss(model).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())
    _loss(model).backward()
    opt.zero_grad()  # torch.optim's default: set_to_none=True
    assert all(p.grad is None for p in model.parameters())
    opt.step()  # no gradients: nothing moves, no state is made
    assert len(opt.state) == 0


# 7 -----------------------------------------------------------------------------------------
SEEN_LAYOUTS = []  # module-level: LearnedOptimizer runs copies of the net it is given


class _RecordingLSTM(CoordinatewiseLSTM):
    """Records the layout each update is given (what routing rules would see)."""

    def update(self, grad, state, layout, loss=None, step=0):
        SEEN_LAYOUTS.append(layout)
        return super().update(grad, state, layout, loss, step)


def test_passing_the_model_gives_names_and_kinds_and_the_same_plain_update():
    model = _model()
    assert module_entries(model) == [("0.weight", (8, 4), "linear_weight"), ("0.bias", (8,), "linear_bias"),
                                     ("2.weight", (1, 8), "linear_weight"), ("2.bias", (1,), "linear_bias")]
    by_model, by_params = _model(), _model()
    opt_model = LearnedOptimizer(by_model, net=_net(_RecordingLSTM))
    opt_params = LearnedOptimizer(by_params.parameters(), net=_net(_RecordingLSTM))
    start = [p.detach().clone() for p in by_model.parameters()]
    SEEN_LAYOUTS.clear()
    _train(by_model, opt_model, 2)
    (seen_model,) = set(SEEN_LAYOUTS)
    SEEN_LAYOUTS.clear()
    _train(by_params, opt_params, 2)
    (seen_params,) = set(SEEN_LAYOUTS)
    assert all(d.abs().sum() > 0 for d in _moved(by_model, start))
    _assert_same(by_model.parameters(), by_params.parameters())

    # the net was given the model's names and kinds; without the model every kind is "other"
    assert (seen_model.names, seen_model.kinds) == (("0.weight", "0.bias", "2.weight", "2.bias"),
                                                    ("linear_weight", "linear_bias") * 2)
    assert seen_params.kinds == ("other",) * 4 and seen_params.shapes == seen_model.shapes


def test_pretrained_optimizers_ship_with_the_package():
    from l2o.pretrained import available

    assert {"quadratic", "mnist", "mnist_stable_rnnprop", "mnist_stable_time"} <= set(available())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(128, 784, generator=gen)
    y = (x @ torch.randn(784, 10, generator=gen)).argmax(1)  # a learnable labelling
    for name in ("mnist", "mnist_stable_time"):  # the second reads the step count (time features)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10))
        opt = LearnedOptimizer.from_pretrained(name, model)
        losses = train_losses(model, opt, lambda m: nn.functional.cross_entropy(m(x), y), 20)
        assert losses[-1] < 0.8 * losses[0], name  # it trains an MLP like the one it was meta-trained on
    with pytest.raises(L2OError, match="available: .*mnist"):
        LearnedOptimizer.from_pretrained("imagenet", model)


def test_the_shipped_cifar10_optimizer_trains_a_cnn_it_did_not_see():
    """The routed conv/fc optimizer (meta-trained on a 16-16-16 5x5 CNN) on a 3x3 CNN with batch norm
    and max-pooling, routed by the model's layer kinds."""
    from l2o.pretrained import available

    assert "cifar10" in available()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 16, 16, generator=gen)
    y = x.mean((2, 3)).argmax(1)  # a learnable labelling: the brightest channel
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 3))
    opt = LearnedOptimizer.from_pretrained("cifar10", model)
    losses = train_losses(model, opt, lambda m: nn.functional.cross_entropy(m(x), y), 30)
    assert losses[-1] < 0.5 * losses[0]
    by_parameters = LearnedOptimizer.from_pretrained("cifar10", model.parameters())
    with pytest.raises(L2OError, match="give LearnedOptimizer the model"):  # kinds unknown: no route
        by_parameters.step()


def _record_shipped() -> dict:
    """Every shipped optimizer's raw updates on fixed gradients (steps 0-3 and late steps, for the
    step features) and a small model's parameters after 4 LearnedOptimizer steps."""
    from l2o.checkpoint import load_checkpoint, net_from_checkpoint
    from l2o.layout import Layout
    from l2o.pretrained import available, path_of

    torch.manual_seed(0)
    layout = Layout.build([("0.weight", (7, 5), "linear_weight"), ("0.bias", (7,), "linear_bias"),
                           ("2.weight", (3, 7), "linear_weight")])
    grads, steps = torch.randn(6, layout.size), [0, 1, 2, 3, 5000, 9999]
    out = {"grads": grads, "steps": steps, "nets": {}, "learned": {}}
    for name in available():
        net = net_from_checkpoint(load_checkpoint(path_of(name)))
        state, ups = net.init_state(layout), []
        with torch.no_grad():
            for g, t in zip(grads, steps):
                u, state = net.update(g, state, layout, None, t)
                ups.append(u.clone())
        out["nets"][name] = torch.stack(ups)
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
        x, y = torch.randn(16, 5), torch.randn(16, 3)
        opt = LearnedOptimizer.from_pretrained(name, model)
        for _ in range(4):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        out["learned"][name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return out


def test_shipped_optimizers_step_exactly_as_recorded_before_the_internals_changed():
    """tests/fixtures/pretrained_updates.pt was written by `_record_shipped` with the code of commit
    2db0064, before the estimators, the composable parts and the file-format module (`cifar10` added
    when it shipped, with the code of commit 9f17490; `general` with that of 80987dc, on another CPU
    model: `verified_on_cpu_by_net`): every shipped optimizer must still give bitwise the same updates,
    on the CPU model its record was verified on (`assert_as_recorded`)."""
    from pathlib import Path

    recorded = torch.load(Path(__file__).parent / "fixtures" / "pretrained_updates.pt", weights_only=True)
    now = _record_shipped()
    assert set(now["nets"]) == set(recorded["nets"]) >= {"quadratic", "mnist", "mnist_stable_rnnprop", "mnist_stable_time",
                                                         "cifar10", "general"}
    for name, updates in recorded["nets"].items():
        cpu = recorded.get("verified_on_cpu_by_net", {}).get(name, recorded.get("verified_on_cpu"))
        assert_as_recorded(now["nets"][name], updates, cpu, name)
        for k, v in recorded["learned"][name].items():
            assert_as_recorded(now["learned"][name][k], v, cpu, f"{name}: {k}")


def test_weight_decay_is_decoupled_as_adamw_does_it():
    """weight_decay shrinks the parameters by lr · wd before the learned update (per param group)."""
    from l2o.optimizers import CoordinatewiseLSTM

    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    net = CoordinatewiseLSTM(hidden_size=4, preprocess_p=10.0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    plain_model = copy.deepcopy(model)
    decayed = LearnedOptimizer([{"params": [model.weight], "weight_decay": 0.1}, {"params": [model.bias]}], net=net, lr=0.5)
    plain = LearnedOptimizer(plain_model, net=copy.deepcopy(net), lr=0.5)
    x = torch.randn(8, 4)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    for opt, m in ((decayed, model), (plain, plain_model)):
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        opt.step()
    # the same learned update, on top of w0 shrunk by 1 - 0.5 · 0.1; the bias group has no decay
    assert torch.allclose(model.weight - plain_model.weight, -0.05 * w0, atol=1e-6)
    assert torch.allclose(model.bias, plain_model.bias, atol=1e-6) and not torch.allclose(model.bias, b0)


def test_the_shipped_general_optimizer_trains_models_of_kinds_it_never_saw():
    """`general` (meta-trained on small MLPs, quadratics and one small CNN) as the only change in
    plain training loops: a CNN with batch norm and a transformer encoder layer, at its default lr."""
    from l2o.pretrained import available

    assert "general" in available()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 16, 16, generator=gen)
    labels = images.mean((2, 3)).argmax(1)
    tokens = torch.randn(32, 10, 16, generator=gen)
    targets = tokens.cumsum(1) / 4   # a running sum: needs attention over earlier positions
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 8 * 8, 3))
    encoder = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    mask = nn.Transformer.generate_square_subsequent_mask(10)
    for model, loss_fn in ((cnn, lambda m: nn.functional.cross_entropy(m(images), labels)),
                           (encoder, lambda m: nn.functional.mse_loss(m(tokens, src_mask=mask, is_causal=True), targets))):
        opt = LearnedOptimizer.from_pretrained("general", model)
        losses = train_losses(model, opt, loss_fn, 60)
        assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * losses[0], type(model).__name__
