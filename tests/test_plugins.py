"""A toy architecture and a toy optimizee defined only in test files (tests/plugins/toy.py and
YAML written into a temporary config dir) meta-train, evaluate and deploy through the real
CLIs and LearnedOptimizer, with no change to l2o/."""
import json
import math
import os
from pathlib import Path

import pytest
import torch

from conftest import TINY_EVAL, TINY_TRAIN, run_cli

TESTS = Path(__file__).resolve().parent


@pytest.fixture()
def conf(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    root = tmp_path / "conf"
    (root / "optimizer").mkdir(parents=True)
    (root / "optimizee").mkdir()
    (root / "optimizer" / "toy_momentum.yaml").write_text("_target_: plugins.toy.ToyMomentum\ninit_lr: 0.01\n")
    (root / "optimizee" / "toy_sphere.yaml").write_text("_target_: plugins.toy.ToySphere\ndim: 5\n")
    return root


def test_toy_architecture_and_optimizee_train_evaluate_and_deploy(tmp_path, conf):
    run = tmp_path / "run"
    run_cli("l2o-train", "--config-dir", str(conf), "optimizee=toy_sphere", "optimizer=toy_momentum", *TINY_TRAIN,
            "schedule.meta_lr=0.05", f"hydra.run.dir={run}", cwd=tmp_path)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["optimizer"] == {"_target_": "plugins.toy.ToyMomentum", "init_lr": 0.01}
    assert ckpt["optimizee"]["config"] == {"_target_": "plugins.toy.ToySphere", "dim": 5}
    assert ckpt["optimizer_state"]["log_lr"] != pytest.approx(math.log(0.01))  # meta-training moved φ

    out = tmp_path / "eval"
    run_cli("l2o-eval", "--config-dir", str(conf), f"checkpoint={run}", *TINY_EVAL, f"hydra.run.dir={out}", cwd=tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizee"] == "toy_sphere"
    assert set(summary["optimizers"]) == {"toy_momentum", "sgd", "rmsprop", "adam", "nag"}
    assert all(math.isfinite(r["final_loss"]) for r in summary["optimizers"].values())

    import sys

    sys.path.insert(0, str(TESTS))
    from l2o.optimizers import LearnedOptimizer

    theta = torch.nn.Parameter(torch.zeros(5))
    center = torch.arange(5.0)
    opt = LearnedOptimizer([theta], checkpoint=run / "checkpoints" / "best.pt")
    first = None
    for _ in range(50):
        opt.zero_grad()
        loss = (theta - center).pow(2).sum()
        loss.backward()
        opt.step()
        first = first or loss.item()
    assert loss.item() < 0.5 * first


def test_the_default_preset_leaves_a_users_optimizee_alone(tmp_path, conf):
    proc = run_cli("l2o-train", "--cfg", "job", "--config-dir", str(conf), "optimizee=toy_sphere", cwd=tmp_path)
    optimizee = proc.stdout.split("optimizee:")[1].split("optimizer:")[0]
    assert "plugins.toy.ToySphere" in optimizee and "distribution" not in optimizee
