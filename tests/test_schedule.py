"""The meta-training schedule: truncation schedules, meta-objectives, the meta-optimizer."""
import functools
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from l2o.errors import L2OError
from l2o.meta.objectives import MeanLogLoss, WeightedSum
from l2o.meta.schedule import Schedule
from l2o.meta.trainer import meta_train
from l2o.meta.truncation import Constant, Curriculum, LogUniform
from l2o.optimizees import Quadratic
from l2o.optimizers import CoordinatewiseLSTM


def test_curriculum_switches_the_horizon_at_the_given_epochs():
    s = Schedule(epochs=10, horizon=10, unroll=5, truncation=Curriculum(10, [[3, 20], [7, 40]]))
    assert [s.horizon_at(e) for e in range(10)] == [10] * 3 + [20] * 4 + [40] * 3
    assert s.val_horizons == [10, 20, 40] and s.max_horizon == 40
    assert Schedule(epochs=10, horizon=10, unroll=5).val_horizons == [10]


@pytest.mark.parametrize("stages", [[[0, 20]], [[5, 20], [5, 40]], [[3, 2]], [[12, 20]], [20], [[3, 20.5]]])
def test_malformed_curriculum_is_refused(stages):
    with pytest.raises(L2OError, match="schedule.truncation.stages"):
        Schedule(epochs=10, horizon=10, unroll=5, truncation=Curriculum(10, stages))


def test_log_uniform_horizons_are_seeded_and_within_bounds():
    t = LogUniform(low=10, high=200)
    draws = [t.horizon_at(e, torch.Generator().manual_seed(s)) for e, s in enumerate(range(400))]
    assert min(draws) >= 10 and max(draws) <= 200 and len(set(draws)) > 50
    # log-uniform: about half the draws fall below the geometric mean
    assert 0.4 < sum(d < math.sqrt(10 * 200) for d in draws) / len(draws) < 0.6
    assert draws[:5] == [t.horizon_at(e, torch.Generator().manual_seed(s)) for e, s in enumerate(range(5))]
    assert t.val_horizons == [200]
    with pytest.raises(L2OError, match="low=300"):
        LogUniform(300, 200)


def test_objectives():
    losses = torch.tensor([4.0, 1.0])
    w = WeightedSum("increasing").step_loss(4)
    assert w(losses, 2) == pytest.approx(0.5 * 2.5)
    assert WeightedSum("last").step_loss(4)(losses, 3) == 0 and WeightedSum("last").step_loss(4)(losses, 4) == 2.5
    assert WeightedSum([1, 2, 3]).step_loss(3)(losses, 2) == pytest.approx(5.0)
    assert MeanLogLoss().step_loss(10)(losses, 1) == pytest.approx(math.log(4.0) / 2 / 10)
    with pytest.raises(L2OError, match="cubic"):
        WeightedSum("cubic")
    with pytest.raises(L2OError, match="one weight per step"):
        Schedule(horizon=10, unroll=5, objective=WeightedSum([1.0] * 5))


def test_meta_optimizer_and_lr_schedule_come_from_the_schedule():
    net = CoordinatewiseLSTM(hidden_size=4)
    s = Schedule(meta_lr=0.01, meta_optimizer=functools.partial(torch.optim.SGD, momentum=0.5),
                 lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.1))
    opt, sched = s.make_meta_optimizer(net.parameters())
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.5
    for _ in range(2):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)
    plain = s.to_dict()
    assert plain["meta_optimizer"] == {"_target_": "torch.optim.sgd.SGD", "_partial_": True, "momentum": 0.5}
    assert plain["truncation"] == {"_target_": "l2o.meta.truncation.Constant", "horizon": 100}
    default_opt, default_sched = Schedule(meta_lr_decay=0.5).make_meta_optimizer(net.parameters())
    assert isinstance(default_opt, torch.optim.Adam) and isinstance(default_sched, torch.optim.lr_scheduler.ExponentialLR)


def test_trainer_follows_the_curriculum_and_validates_every_horizon(tmp_path):
    net = CoordinatewiseLSTM(hidden_size=4)
    schedule = Schedule(epochs=4, horizon=5, unroll=5, problems_per_epoch=2, val_every=2, num_val=2,
                        truncation=Curriculum(5, [[2, 10]]))
    meta_train(net, Quadratic(), schedule, device=torch.device("cpu"), run_dir=tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("meta/horizon")] == [5, 5, 10, 10]
    at5, at10, score = (events.Scalars(k) for k in ("val/loss_at_5", "val/loss_at_10", "val/final_loss"))
    for a, b, c in zip(at5, at10, score):
        assert c.value == pytest.approx((a.value + b.value) / 2)


def test_trainer_with_random_horizons_and_log_objective(tmp_path):
    net = CoordinatewiseLSTM(hidden_size=4)
    schedule = Schedule(epochs=6, horizon=12, unroll=4, problems_per_epoch=2, val_every=3, num_val=2,
                        truncation=LogUniform(3, 12), objective=MeanLogLoss())
    result = meta_train(net, Quadratic(), schedule, device=torch.device("cpu"), run_dir=tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    horizons = [e.value for e in events.Scalars("meta/horizon")]
    assert all(3 <= h <= 12 for h in horizons) and len(set(horizons)) > 1
    assert math.isfinite(result["best_val"]) and all(math.isfinite(e.value) for e in events.Scalars("meta/loss"))
    assert Constant(7).val_horizons == [7]


def test_constant_horizon_can_validate_at_other_horizons(tmp_path):
    assert Constant(5, validate_at=[10, 5]).val_horizons == [5, 10]
    assert Constant(5, validate_at=[10]).config()["validate_at"] == [10]
    for bad in ([], [0], "10", [2.5], [True]):
        with pytest.raises(L2OError, match="validate_at"):
            Constant(5, validate_at=bad)
    net = CoordinatewiseLSTM(hidden_size=4)
    schedule = Schedule(epochs=2, horizon=5, unroll=5, problems_per_epoch=2, val_every=2, num_val=2,
                        truncation=Constant(5, validate_at=[5, 10]))
    meta_train(net, Quadratic(), schedule, device=torch.device("cpu"), run_dir=tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("meta/horizon")] == [5, 5]   # trains at T = 5 only
    at5, at10, score = (events.Scalars(k) for k in ("val/loss_at_5", "val/loss_at_10", "val/final_loss"))
    assert score[0].value == pytest.approx((at5[0].value + at10[0].value) / 2)


def test_validation_window_scores_the_mean_loss_of_the_last_steps():
    from l2o.meta.trainer import validate
    from l2o.meta.unroll import rollout
    torch.manual_seed(0)
    net, problem = CoordinatewiseLSTM(hidden_size=4), Quadratic().sample([0, 1, 2])
    losses = rollout(net, problem, 10)[0]  # (11, 3): f(θ_0) .. f(θ_10)
    assert validate(net, problem, [10])[10] == pytest.approx(losses[10].mean().item())
    at = validate(net, problem, [4, 10], window=3)
    assert at[10] == pytest.approx(losses[8:11].mean().item()) and at[4] == pytest.approx(losses[2:5].mean().item())
    assert validate(net, problem, [2], window=50)[2] == pytest.approx(losses[:3].mean().item())  # clipped at step 0
    with pytest.raises(L2OError, match="val_window"):
        Schedule(val_window=0)
