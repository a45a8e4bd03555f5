"""The meta-training schedule: horizon curriculum and its validation yardstick."""
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from l2o.errors import L2OError
from l2o.meta.schedule import Schedule
from l2o.meta.trainer import meta_train
from l2o.optimizees import Quadratic
from l2o.optimizers import CoordinatewiseLSTM


def test_curriculum_switches_the_horizon_at_the_given_epochs():
    s = Schedule(epochs=10, horizon=10, unroll=5, curriculum=[[3, 20], [7, 40]])
    assert [s.horizon_at(e) for e in range(10)] == [10] * 3 + [20] * 4 + [40] * 3
    assert s.val_horizons == [10, 20, 40] and s.max_horizon == 40
    assert s.step_weights(20).shape == (20,)
    assert Schedule(epochs=10, horizon=10, unroll=5).val_horizons == [10]


@pytest.mark.parametrize("curriculum", [[[0, 20]], [[5, 20], [5, 40]], [[3, 2]], [[12, 20]], [20], [[3, 20.5]]])
def test_malformed_curriculum_is_refused(curriculum):
    with pytest.raises(L2OError, match="schedule.curriculum"):
        Schedule(epochs=10, horizon=10, unroll=5, curriculum=curriculum)


def test_trainer_follows_the_curriculum_and_validates_every_horizon(tmp_path):
    net = CoordinatewiseLSTM(hidden_size=4)
    schedule = Schedule(epochs=4, horizon=5, unroll=5, problems_per_epoch=2, val_every=2, num_val=2,
                        curriculum=[[2, 10]])
    meta_train(net, Quadratic(), schedule, device=torch.device("cpu"), run_dir=tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("meta/horizon")] == [5, 5, 10, 10]
    at5, at10, score = (events.Scalars(k) for k in ("val/loss_at_5", "val/loss_at_10", "val/final_loss"))
    for a, b, c in zip(at5, at10, score):
        assert c.value == pytest.approx((a.value + b.value) / 2)
