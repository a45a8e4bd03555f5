"""The authors' code's own CI check: f(x) = x² with a linear coordinatewise net
(no LSTM layers), meta-lr 1e-2, unroll 20, 500 epochs × 5 unrolls, must reach loss < 1e-5."""
import pytest
import torch

from l2o.meta.schedule import Schedule
from l2o.meta.trainer import meta_train
from l2o.meta.unroll import rollout
from l2o.optimizees import Simple
from l2o.optimizers import CoordinatewiseLSTM


@pytest.mark.slow  # 2,500 meta-steps; test_unroll checks the meta-gradient they follow against a hand computation
def test_linear_net_learns_to_minimise_x_squared(tmp_path):
    net = CoordinatewiseLSTM(num_layers=0, preprocess_p=None, output_scale=1.0)
    schedule = Schedule(epochs=500, horizon=100, unroll=20, meta_lr=1e-2, val_every=50, num_val=1)
    result = meta_train(net, Simple(), schedule, device=torch.device("cpu"), run_dir=tmp_path, progress=False)
    final = rollout(net, Simple().sample([0]), 100)[0][-1, 0].item()
    assert final < 1e-5, final
    assert result["best_val"] < 1e-5
