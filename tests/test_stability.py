"""Meta-training techniques for long horizons: the adaptive curriculum, imitation of a teacher,
random scaling and the optimizee mix."""
import functools
import math

import pytest
import torch

from l2o.checkpoint import load_checkpoint
from l2o.errors import L2OError
from l2o.meta.distributed import World
from l2o.meta.imitation import Imitation, imitate, step_matching_loss
from l2o.meta.logging import MetaLogger
from l2o.meta.schedule import Schedule
from l2o.meta.trainer import Progress, _Run, meta_train, validate
from l2o.meta.truncation import ADVANCE, STAY, STOP, Adaptive
from l2o.meta.unroll import start, unroll
from l2o.optimizees import Quadratic, split_seeds
from l2o.optimizees.mix import Mix
from l2o.optimizees.scaling import RandomScaling, ScaledProblem
from l2o.optimizers import CoordinatewiseLSTM

CPU = torch.device("cpu")


# --- adaptive curriculum --------------------------------------------------------------------

def test_adaptive_curriculum_validates_at_the_next_horizon_and_decides():
    t = Adaptive([10, 20, 50], patience=2)
    s = Schedule(epochs=100, horizon=10, unroll=5, truncation=t)
    seen = []
    for k in range(3):
        t.stage = k
        seen.append((s.horizon_at(0), s.val_horizons))
    assert seen == [(10, [20]), (20, [50]), (50, [50])]
    assert s.max_horizon == 50 and s.num_stages == 3
    assert t.decide(0, 1, True) == STAY
    assert t.decide(0, 2, True) == ADVANCE
    assert t.decide(1, 2, False) == STOP  # the stage never beat the φ it started from
    assert t.decide(2, 2, True) == STOP  # the last stage is done


@pytest.mark.parametrize("horizons", [[10, 10], [20, 10], [2, 10], [], "100", [10.5]])
def test_malformed_adaptive_curriculum_is_refused(horizons):
    with pytest.raises(L2OError, match="schedule.truncation.horizons"):
        Schedule(epochs=10, horizon=10, unroll=5, truncation=Adaptive(horizons))


def test_advancing_restores_the_stage_best_and_rescores_it(tmp_path):
    torch.manual_seed(0)
    schedule = Schedule(epochs=10, horizon=4, unroll=4, num_val=3, truncation=Adaptive([4, 8, 16], patience=1))
    net = CoordinatewiseLSTM(hidden_size=4)
    run = _Run(net, schedule, 0, tmp_path, {}, World())
    best = {k: v.clone() for k, v in net.state_dict().items()}
    run.save("best.pt", val_loss=1.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # φ moved on after its best check
    run.prog = Progress(epoch=5, best_val=1.0, checks_since_best=1)
    schedule.truncation.load_state_dict({"stage": 0, "stage_start": 0, "checks": 1, "checks_since_best": 0, "improved": True})
    assert schedule.truncation.observe(5, improved=False) == ADVANCE   # its second check, no better: move on
    assert schedule.truncation.state_dict() == {"stage": 1, "stage_start": 5, "checks": 0, "checks_since_best": 0,
                                                "improved": False}
    val_problem = Quadratic().sample(split_seeds("val", 3))
    log = MetaLogger(tmp_path, 10, 5, main=True, progress=False)
    run.advance(val_problem, log)
    log.close()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in best.items())
    assert run.prog.checks_since_best == 0
    assert run.prog.best_val == pytest.approx(validate(net, val_problem, [16])[16])  # the new stage's bar


def test_curriculum_advances_when_validation_stalls_and_stops_when_a_stage_never_improves(tmp_path, capsys):
    torch.manual_seed(0)
    schedule = Schedule(epochs=24, horizon=4, unroll=4, meta_lr=0.1, val_every=1, num_val=4,
                        truncation=Adaptive([4, 8, 16, 32], patience=1))
    result = meta_train(CoordinatewiseLSTM(hidden_size=4), Quadratic(), schedule, device=CPU, run_dir=tmp_path,
                        progress=False)
    out = capsys.readouterr().out
    assert "curriculum stage 1 from epoch" in out and "never improved" in out, out
    assert result["stopped_early"] and result["epochs_run"] < 24
    ckpts = tmp_path / "checkpoints"
    assert (ckpts / "best_stage0.pt").exists()
    # best.pt is the φ the last stage started from, scored at that stage's validation horizon
    best = load_checkpoint(ckpts / "best.pt")
    assert best["val_loss"] == pytest.approx(result["best_val"])
    assert all(torch.equal(best["optimizer_state"][k], v)
               for k, v in load_checkpoint(ckpts / "best_stage0.pt")["optimizer_state"].items())


def _adaptive_schedule(epochs):
    # stage 0 ends at its 6-epoch budget; the later stages run on (patience far away)
    return Schedule(epochs=epochs, horizon=4, unroll=4, meta_lr=0.03, val_every=1, num_val=4,
                    truncation=Adaptive([4, 8, 16, 32], patience=50, stage_epochs=[6, None, None, None]))


def test_a_curriculum_that_moves_on_at_the_last_epoch_keeps_best_as_scored_and_a_longer_resume_starts_the_stage(tmp_path, capsys):
    """Stage 0's 6-epoch budget ends at the run's last epoch: nothing is left to train at stage 1, so
    best.pt is not restored and rescored at stage 1's longer horizon; resumed to 24 epochs, the run
    starts stage 1 then and ends bit for bit as the run that trained 24 epochs at once."""
    torch.manual_seed(0)
    full = CoordinatewiseLSTM(hidden_size=4)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    meta_train(full, Quadratic(), _adaptive_schedule(24), device=CPU, run_dir=tmp_path / "full", progress=False)
    capsys.readouterr()

    short = CoordinatewiseLSTM(hidden_size=4)
    short.load_state_dict(init)
    result = meta_train(short, Quadratic(), _adaptive_schedule(6), device=CPU, run_dir=tmp_path / "short", progress=False)
    out = capsys.readouterr().out
    assert "moves on to stage 1 at the last epoch" in out and "curriculum stage 1 from epoch" not in out, out
    ckpts = tmp_path / "short" / "checkpoints"
    stage0 = load_checkpoint(ckpts / "best_stage0.pt")
    assert result["best_val"] == pytest.approx(stage0["val_loss"])   # scored at stage 0's horizon, as it was chosen
    assert load_checkpoint(ckpts / "best.pt")["val_loss"] == pytest.approx(stage0["val_loss"])

    last = load_checkpoint(ckpts / "last.pt")
    assert last["training"]["progress"]["advance_pending"]
    meta_train(short, Quadratic(), _adaptive_schedule(24), device=CPU, run_dir=tmp_path / "short", progress=False,
               resume_from=last)
    assert "curriculum stage 1 from epoch 6" in capsys.readouterr().out
    resumed = torch.load(ckpts / "last.pt", weights_only=True)
    final = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    same = lambda progress: {k: v for k, v in progress.items() if k != "seconds"}  # noqa: E731 (wall time differs)
    assert same(resumed["training"]["progress"]) == same(final["training"]["progress"])
    for k, v in final["optimizer_state"].items():
        assert torch.equal(resumed["optimizer_state"][k], v), k


def test_curriculum_resumes_mid_stage_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    full = CoordinatewiseLSTM(hidden_size=4)
    init = {k: v.clone() for k, v in full.state_dict().items()}
    result = meta_train(full, Quadratic(), _adaptive_schedule(24), device=CPU, run_dir=tmp_path / "full", progress=False)
    ckpts = tmp_path / "full" / "checkpoints"
    final = torch.load(ckpts / "last.pt", weights_only=True)["training"]
    assert final["truncation"]["stage"] == 1 and final["truncation"]["stage_start"] == 6
    assert (ckpts / "best_stage0.pt").exists()
    assert load_checkpoint(ckpts / "best.pt")["val_loss"] == pytest.approx(result["best_val"])

    # the same run stopped after 12 epochs (mid-stage) and resumed gives the same φ bit for bit
    part = CoordinatewiseLSTM(hidden_size=4)
    part.load_state_dict(init)
    meta_train(part, Quadratic(), _adaptive_schedule(12), device=CPU, run_dir=tmp_path / "part", progress=False)
    last = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    assert result["epochs_run"] > 12, "the full run ended before epoch 12: nothing to resume"
    assert last["training"]["truncation"]["stage"] >= 1, "epoch 12 is not past an advance: not mid-curriculum"
    meta_train(part, Quadratic(), _adaptive_schedule(24), device=CPU, run_dir=tmp_path / "part", progress=False,
               resume_from=last)
    resumed = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)
    same = lambda progress: {k: v for k, v in progress.items() if k != "seconds"}  # noqa: E731 (wall time differs)
    assert same(resumed["training"]["progress"]) == same(final["progress"])
    assert resumed["training"]["truncation"] == final["truncation"]
    assert all(torch.equal(resumed["optimizer_state"][k], v) for k, v in full.state_dict().items())


# --- imitation ------------------------------------------------------------------------------

def _sgd_net(lr):
    """The linear coordinatewise net set to be exactly SGD with `lr`: update = -lr · ∇."""
    net = CoordinatewiseLSTM(hidden_size=1, num_layers=0, preprocess_p=None)
    with torch.no_grad():
        net.out_weight.fill_(-lr)
        net.out_bias.zero_()
    return net


def test_imitation_loss_is_zero_when_the_learned_step_is_the_teachers():
    problem = Quadratic().sample([1, 2])
    net = _sgd_net(0.05)
    carry = start(net, problem)
    imitation = Imitation(functools.partial(torch.optim.SGD, lr=0.05))
    meta_loss, losses, end = imitate(net, problem, carry, 5, imitation.teacher(carry.params), imitation.loss)
    assert float(meta_loss.detach()) == pytest.approx(0.0, abs=1e-12)
    # and θ followed the teacher: the same trajectory as the learned SGD-net on its own
    _, own_losses, own_end = unroll(net, problem, start(net, problem), 5)
    assert torch.allclose(end.params, own_end.params, atol=1e-6) and torch.allclose(losses, own_losses, atol=1e-6)
    assert step_matching_loss(torch.ones(3), torch.zeros(3)) == pytest.approx(0.5)
    assert step_matching_loss(torch.ones(3), 2 * torch.ones(3), normalize=True) == pytest.approx(0.5 / 4)


def test_imitation_gradient_reaches_phi_and_theta_follows_adam():
    torch.manual_seed(0)
    problem = Quadratic().sample([3, 4])
    net = CoordinatewiseLSTM(hidden_size=4)
    carry = start(net, problem)
    imitation = Imitation(functools.partial(torch.optim.Adam, lr=0.03), probability=1.0)
    meta_loss, _, end = imitate(net, problem, carry, 6, imitation.teacher(carry.params), imitation.loss)
    meta_loss.backward()
    assert float(meta_loss.detach()) > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert sum(float(p.grad.abs().sum()) for p in net.parameters()) > 0
    theta = problem.init_params().requires_grad_(True)
    adam = torch.optim.Adam([theta], lr=0.03)
    for t in range(6):
        adam.zero_grad()
        problem.loss(theta, t).sum().backward()
        adam.step()
    assert torch.allclose(end.params, theta.detach(), atol=1e-6)


def test_imitation_probability_per_stage():
    im = Imitation(probability=[0.0, 1.0])  # the last entry holds for later stages
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    assert [im.draw(g, 0) for g in gens] == [False] * 3 and [im.draw(g, 4) for g in gens] == [True] * 3
    # one draw per epoch at any probability: the generator advances the same way (exact resume)
    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    im.draw(a, 0), Imitation(probability=0.3).draw(b)
    assert torch.equal(a.get_state(), b.get_state())
    assert im.config()["probability"] == [0.0, 1.0] and Imitation(probability=0.3).config()["probability"] == 0.3
    with pytest.raises(L2OError, match="schedule.imitation"):
        Imitation(probability=[])


def test_imitation_probability_is_drawn_from_the_generator():
    im = Imitation(probability=0.3)
    draws = [im.draw(torch.Generator().manual_seed(s)) for s in range(2000)]
    assert 0.26 < sum(draws) / len(draws) < 0.34
    assert draws[:20] == [im.draw(torch.Generator().manual_seed(s)) for s in range(20)]
    for bad in ({"probability": 1.5}, {"weight": 0}):
        with pytest.raises(L2OError, match="schedule.imitation"):
            Imitation(**bad)


# --- random scaling -------------------------------------------------------------------------

def test_scaling_is_applied_and_undone_consistently():
    problem = Quadratic().sample([5, 6])
    scaled = RandomScaling(3.0, 3.0).wrap(Quadratic()).sample([5, 6])
    c, s = scaled.param_scale, scaled.loss_scale
    assert c.shape == (2, problem.spec.numel) and s.shape == (2,)
    assert float(c.log().abs().max()) <= 3.0 and float(c.log().abs().max()) > 1.0 and not torch.allclose(c, c[0, 0])
    theta = scaled.init_params().requires_grad_(True)
    assert torch.allclose(scaled.original_params(theta), problem.init_params())  # same starting model
    loss, _ = scaled.evaluate(theta, 0, None)
    (g,) = torch.autograd.grad(loss.sum(), theta)
    raw = problem.init_params().requires_grad_(True)
    raw_loss = problem.loss(raw, 0)
    (raw_g,) = torch.autograd.grad(raw_loss.sum(), raw)
    assert torch.allclose(loss, s * raw_loss.detach())
    assert torch.allclose(scaled.reported_loss(loss.detach()), raw_loss.detach())  # undone for the meta-objective
    assert torch.allclose(g, s[:, None] * c * raw_g, rtol=1e-5)  # chain rule: s · c · ∇f
    again = RandomScaling(3.0, 3.0).wrap(Quadratic()).sample([6, 9, 5])   # an instance's factors follow its seed
    assert torch.equal(again.param_scale[[2, 0]], c) and torch.equal(again.loss_scale[[2, 0]], s)
    off = RandomScaling(0.0, 0.0).apply(problem, [5, 6])
    assert torch.equal(off.param_scale, torch.ones_like(c)) and torch.equal(off.loss_scale, torch.ones_like(s))
    with pytest.raises(L2OError, match="schedule.scaling.param_range"):
        RandomScaling(-1.0)


def test_scaled_unroll_reports_the_original_losses():
    problem = Quadratic().sample([7])
    scaled = ScaledProblem(problem, torch.ones(1, problem.spec.numel), torch.tensor([100.0]))
    # SGD(0.01) on 100·f takes the steps of SGD(1.0) on f; the recorded losses are f's
    _, seen, _ = unroll(_sgd_net(0.01), scaled, start(_sgd_net(0.01), scaled), 3)
    _, plain, _ = unroll(_sgd_net(1.0), problem, start(_sgd_net(1.0), problem), 3)
    _, small, _ = unroll(_sgd_net(0.01), problem, start(_sgd_net(0.01), problem), 3)
    assert torch.allclose(seen, plain, rtol=1e-5) and not torch.allclose(seen, small)


# --- optimizee mix --------------------------------------------------------------------------

def test_mix_samples_by_its_weights_reproducibly():
    mix = Mix({"quad": Quadratic(), "quad20": Quadratic(dim=20)}, {"quad": 3.0, "quad20": 1.0})
    members = [mix.member_index(s) for s in range(4000)]
    assert 0.72 < members.count(0) / len(members) < 0.78
    assert members[:50] == [Mix({"quad": Quadratic(), "quad20": Quadratic(dim=20)}, {"quad": 3, "quad20": 1}).member_index(s)
                            for s in range(50)]
    first = [s for s, m in enumerate(members) if m == 1][0]
    assert mix.sample([first, 10_001]).spec.numel == 20
    assert torch.equal(mix.sample([first]).init_params(), Quadratic(dim=20).sample([first]).init_params())
    assert [p.spec.numel for p in mix.validation_problems([1, 2])] == [10, 20]
    with pytest.raises(L2OError, match="not members"):
        Mix({"quad": Quadratic()}, {"relu": 1.0})
    with pytest.raises(L2OError, match="positive sum"):
        Mix({"quad": Quadratic()}, {"quad": 0.0})


def test_training_on_a_mix_with_every_technique_runs_and_validates_on_all_members(tmp_path):
    torch.manual_seed(0)
    net = CoordinatewiseLSTM(hidden_size=4)
    schedule = Schedule(epochs=6, horizon=4, unroll=4, val_every=3, num_val=2,
                        truncation=Adaptive([4, 8], patience=1),
                        imitation=Imitation(functools.partial(torch.optim.Adam, lr=0.03), probability=0.5),
                        scaling=RandomScaling(1.0, 1.0))
    mix = Mix({"quad": Quadratic(), "quad20": Quadratic(dim=20)})
    result = meta_train(net, mix, schedule, device=CPU, run_dir=tmp_path, progress=False)
    assert result["epochs_run"] >= 3 and result["best_val"] < float("inf")
    vp = mix.validation_problems(split_seeds("val", 2))
    expected = sum(validate(net, p, [8])[8] for p in vp) / 2
    assert validate(net, vp, [8])[8] == pytest.approx(expected)


def test_min_checks_keeps_a_stage_for_that_many_checks():
    t = Adaptive([10, 20], patience=1, min_checks=3)  # Chen et al.'s rule
    assert t.decide(0, 1, False, 0, 1) == STAY and t.decide(0, 2, False, 0, 2) == STAY
    assert t.decide(0, 3, False, 0, 3) == STOP  # three checks, none beat the start
    assert t.decide(0, 1, True, 0, 3) == ADVANCE and t.decide(0, 0, True, 0, 5) == STAY
    assert Adaptive([10, 20], patience=1, min_checks=3, stage_epochs=30).decide(0, 1, True, 30, 1) == ADVANCE
    with pytest.raises(L2OError, match="min_checks"):
        Adaptive([10, 20], min_checks=0)
    # the default is left out of the stored config, so runs saved before min_checks existed still resume
    assert "min_checks" not in Adaptive([10, 20]).config() and t.config()["min_checks"] == 3


def test_min_checks_counts_checks_per_stage_in_training(tmp_path, capsys):
    torch.manual_seed(0)
    schedule = Schedule(epochs=40, horizon=4, unroll=4, meta_lr=0.1, val_every=1, num_val=4,
                        truncation=Adaptive([4, 8, 16, 32], patience=1, min_checks=3))
    result = meta_train(CoordinatewiseLSTM(hidden_size=4), Quadratic(), schedule, device=CPU, run_dir=tmp_path,
                        progress=False)
    out = capsys.readouterr().out
    starts = [int(line.split("from epoch ")[1].split(":")[0]) for line in out.splitlines() if "curriculum stage" in line]
    assert starts, out  # it advanced at least once
    ends = starts + [result["epochs_run"] + 1]
    # every stage (the stopping one too) ran at least 3 checks of one epoch each
    assert all(b - a >= 3 for a, b in zip([1] + starts, ends)), out


def test_stage_epochs_cap_ends_a_stage():
    t = Adaptive([10, 20], patience=5, stage_epochs=[30, None])
    assert t.decide(0, 0, True, 29) == STAY and t.decide(0, 0, True, 30) == ADVANCE
    assert t.decide(1, 0, True, 10_000) == STAY
    with pytest.raises(L2OError, match="stage_epochs"):
        Adaptive([10, 20], stage_epochs=[30])


# --- long-horizon evaluation -----------------------------------------------------------------

def test_final_log_loss_is_the_mean_log_over_problems_that_did_not_diverge():
    from l2o.evaluation.stats import Curve

    # 3 problems over 2 steps; the third blows up (> 10x its initial loss) and is left out
    losses = torch.tensor([[1.0, 1.0, 1.0], [1e-2, 1e-6, 50.0]])
    c = Curve.from_losses(losses, divergence_factor=10)
    assert c.final_log_loss == pytest.approx((math.log(1e-2) + math.log(1e-6)) / 2)
    assert c.final_log_loss < math.log(float(c.mean[-1]))  # the mean loss hides the 1e-6 problem
    assert math.isnan(Curve.from_losses(torch.tensor([[1.0], [0.0]]), 10).final_log_loss)  # ln 0: undefined
