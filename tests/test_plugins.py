"""A toy architecture and a toy optimizee defined only in test files (tests/plugins/toy.py and
YAML written into a temporary config dir) meta-train, evaluate and deploy through the real
CLIs and LearnedOptimizer, with no change to l2o/."""
import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from conftest import TINY_EVAL, TINY_TRAIN, run_cli, train_losses

TESTS = Path(__file__).resolve().parent
INIT_LR = 0.01


@pytest.fixture()
def conf(tmp_path, monkeypatch):
    """A user's config dir; the CLIs (subprocesses) import `plugins.toy` through PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(TESTS))  # and this process too (LearnedOptimizer below)
    root = tmp_path / "conf"
    (root / "optimizer").mkdir(parents=True)
    (root / "optimizee").mkdir()
    (root / "optimizer" / "toy_momentum.yaml").write_text(f"_target_: plugins.toy.ToyMomentum\ninit_lr: {INIT_LR}\n")
    (root / "optimizee" / "toy_sphere.yaml").write_text("_target_: plugins.toy.ToySphere\ndim: 5\n")
    return root


def test_the_toy_plugins_follow_the_interfaces():
    from l2o.optimizers.base import build_net
    from plugins.toy import ToyMomentum, ToySphere

    net = ToyMomentum(init_lr=INIT_LR)
    assert net.full_config() == {"_target_": "plugins.toy.ToyMomentum", "init_lr": INIT_LR}
    assert isinstance(build_net(net.full_config()), ToyMomentum)
    problem = ToySphere().sample([3, 4, 5])
    assert problem.init_params().shape == (3, 5) and not problem.init_params().any()
    losses = problem.loss(problem.init_params(), 0)
    assert losses.shape == (3,) and len(set(losses.tolist())) == 3  # seeded, different instances
    torch.testing.assert_close(ToySphere().sample([4]).loss(torch.zeros(1, 5), 0), losses[1:2])  # same seed, same one


def test_toy_architecture_and_optimizee_train_evaluate_and_deploy(tmp_path, conf):
    run = tmp_path / "run"
    run_cli("l2o-train", "--config-dir", str(conf), "optimizee=toy_sphere", "optimizer=toy_momentum", *TINY_TRAIN,
            "schedule.meta_lr=0.05", f"hydra.run.dir={run}", cwd=tmp_path)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["optimizer"]["_target_"] == "plugins.toy.ToyMomentum"
    assert ckpt["optimizer"] == {"_target_": "plugins.toy.ToyMomentum", "init_lr": INIT_LR}
    assert ckpt["optimizee"]["config"] == {"_target_": "plugins.toy.ToySphere", "dim": 5}
    phi = ckpt["optimizer_state"]
    assert set(phi) == {"log_lr", "logit_beta"}
    # meta-training moved φ (4 Adam steps at meta_lr 0.05 move each scalar by about 0.2)
    assert abs(float(phi["log_lr"]) - math.log(INIT_LR)) > 1e-3
    assert abs(float(phi["logit_beta"]) - 0.0) > 1e-3

    out = tmp_path / "eval"
    run_cli("l2o-eval", "--config-dir", str(conf), f"checkpoint={run}", *TINY_EVAL, f"hydra.run.dir={out}", cwd=tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizee"] == "toy_sphere"
    # the learned entry is named after its architecture (ToyMomentum.NAME), then the four baselines
    assert set(summary["optimizers"]) == {"toy_momentum", "sgd", "rmsprop", "adam", "nag"}
    assert summary["optimizers"]["toy_momentum"]["lr"] is None
    assert all(summary["optimizers"][b]["lr"] is not None for b in ("sgd", "rmsprop", "adam", "nag"))
    assert all(math.isfinite(r["final_loss"]) for r in summary["optimizers"].values())

    # deployment: the trained toy optimizer on a user's nn.Module (a quadratic in its weights)
    from l2o.optimizers import LearnedOptimizer
    from plugins.toy import ToyMomentum

    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    x = torch.randn(64, 5)
    y = x @ torch.arange(1.0, 6.0).unsqueeze(1) + 0.5
    opt = LearnedOptimizer(model, checkpoint=run / "checkpoints" / "best.pt")
    assert isinstance(opt.net, ToyMomentum)
    losses = train_losses(model, opt, lambda m: nn.functional.mse_loss(m(x), y), 50)
    assert losses[-1] < 0.5 * losses[0]
    assert all(opt.state[p]["m"].shape == (1, p.numel()) for p in model.parameters())


def test_the_default_preset_leaves_a_users_optimizee_alone(tmp_path, conf):
    proc = run_cli("l2o-train", "--cfg", "job", "--config-dir", str(conf), "optimizee=toy_sphere", cwd=tmp_path)
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["optimizee"] == {"_target_": "plugins.toy.ToySphere", "dim": 5}  # no `distribution` or other preset keys


def test_a_users_task_runs_from_its_config_dir_and_a_nan_loss_is_a_reported_divergence(tmp_path, conf):
    """A task of the user's own package (plugins.toy.ToyRegression) through --config-dir, as the suite's
    tasks run; the same task with a loss that turns NaN: every run is reported diverged, the
    evaluation still writes its results, and rerunning it reuses its saved runs."""
    from conftest import REPO

    (conf / "task").mkdir()
    (conf / "task" / "toy_regression.yaml").write_text("_target_: plugins.toy.ToyRegression\ndim: 8\nnan_from_step: -1\nsteps: 12\nbatch_size: 16\n")
    common = ("--config-dir", str(conf), "task=toy_regression", "protocol=tasks", "num_test=2", "tuning.num=2", "tuning.low=0.001", "tuning.high=0.01",
              f"checkpoint={REPO / 'l2o/pretrained/general.pt'}", "name=general", "progress=false")
    out = tmp_path / "eval"
    run_cli("l2o-eval", *common, f"hydra.run.dir={out}", cwd=tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizee"] == "toy_regression" and summary["task_description"] == "a user's regression task"
    assert set(summary["optimizers"]) == {"general", "adam", "adamw", "sgdm"}
    assert all(r["diverged"] == 0 and math.isfinite(r["test_loss"]) for r in summary["optimizers"].values())

    bad = tmp_path / "nan"
    proc = run_cli("l2o-eval", *common, "task.nan_from_step=5", f"hydra.run.dir={bad}", cwd=tmp_path)
    summary = json.loads((bad / "summary.json").read_text())
    for name, row in summary["optimizers"].items():
        assert row["diverged"] == 1.0 and "test_loss" not in row, name   # NaN from step 5 in every run
    assert "| general | learned |" in proc.stdout and "100%" in proc.stdout
    assert "every lr of the grid diverged in tuning for adam, adamw, sgdm" in proc.stdout and "edge of the grid" not in proc.stdout
    saved = sorted(p.stat().st_mtime_ns for p in (bad / "partial").rglob("*.pt"))
    run_cli("l2o-eval", *common, "task.nan_from_step=5", "resume=true", f"hydra.run.dir={bad}", cwd=tmp_path)
    assert sorted(p.stat().st_mtime_ns for p in (bad / "partial").rglob("*.pt")) == saved   # nothing rerun or overwritten
    assert json.loads((bad / "summary.json").read_text())["optimizers"] == summary["optimizers"]
