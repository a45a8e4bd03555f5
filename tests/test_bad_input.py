"""Bad input gets one paragraph naming the value and what is allowed, never a traceback.

Most cases run the CLI's own entry function in this process, on the config Hydra composes from the
same command line (a process per case would cost seconds of `import torch` each); the cases marked
`process` run the installed console script, as a user does."""
import pickle

import pytest
import torch

from conftest import TINY_EVAL, TINY_TRAIN, cli_in_process, run_cli


def _fails(name, *args, cwd, code=2, process=False):
    if process:
        proc = run_cli(name, *args, cwd=cwd, check=False)
        returncode, stderr = proc.returncode, proc.stderr
    else:
        returncode, stderr = cli_in_process(name, *args, cwd=cwd)
    assert returncode == code, (returncode, stderr)
    assert "Traceback" not in stderr, stderr
    return stderr


@pytest.mark.parametrize(
    "override, words",
    [
        ("schedule.unroll=50", ["schedule.unroll=50", "horizon=10", "U <= T"]),
        ("schedule.epochs=0", ["schedule.epochs=0", "positive integer"]),
        ("schedule.meta_lr=-1", ["schedule.meta_lr=-1", "a number > 0"]),
        ("schedule.objective.weights=cubic", ["schedule.objective.weights='cubic'", "uniform"]),
        ("optimizee.distribution=cauchy", ["optimizee.distribution='cauchy'", "gaussian, uniform"]),
        ("optimizer.num_layers=-2", ["optimizer.num_layers=-2", ">= 0"]),
        ("device=tpu", ["device='tpu'", "auto, cpu, cuda"]),
        ("optimizer=adam", ["optimizer='adam'", "baseline", "optimizer=lstm"]),
        ("optimizee.init_std=-1", ["optimizee.init_std=-1", ">= 0"]),
        ("guard.lr_factor=2", ["guard.lr_factor=2", "(0, 1)"]),
        ("checkpoint_every=0", ["checkpoint_every=0", "positive integer"]),
    ],
)
def test_train_rejects_bad_values_before_any_work(tmp_path, override, words):
    run = tmp_path / "run"
    err = _fails("l2o-train", *TINY_TRAIN, override, f"hydra.run.dir={run}", cwd=tmp_path,
                 process=override == "schedule.unroll=50")
    for w in words:
        assert w in err.replace("\n", " "), (w, err)
    assert not (run / "checkpoints").exists()


def test_unknown_optimizee_names_the_choices(tmp_path):
    err = _fails("l2o-train", "optimizee=rosenbrock", cwd=tmp_path, code=1, process=True)
    assert "optimizee/rosenbrock" in err and "quadratic" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    run_cli("l2o-train", *TINY_TRAIN, f"hydra.run.dir={root / 'run'}", cwd=root)
    return root / "run"


def test_missing_checkpoint(tmp_path):
    err = _fails("l2o-eval", f"checkpoint={tmp_path / 'nope.pt'}", *TINY_EVAL, cwd=tmp_path, process=True)
    assert "nope.pt" in err and "does not exist" in err


def test_no_checkpoint_given(tmp_path):
    err = _fails("l2o-eval", *TINY_EVAL, cwd=tmp_path)
    assert "checkpoint is required" in err


def test_unreadable_checkpoint(tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint at all")
    err = _fails("l2o-eval", f"checkpoint={bad}", *TINY_EVAL, cwd=tmp_path)
    assert "garbage.pt" in err and "could not be read" in err


def test_malicious_pickle_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format_version": 1, "x": Evil()}))
    err = _fails("l2o-eval", f"checkpoint={evil}", *TINY_EVAL, cwd=tmp_path)
    assert "weights_only" in err and not marker.exists()


def test_architecture_mismatch_names_the_fields(run_dir, tmp_path):
    err = _fails("l2o-eval", f"checkpoint={run_dir}", "optimizer=lstm", "optimizer.hidden_size=7", *TINY_EVAL,
                 cwd=tmp_path)
    assert "hidden_size: config 7 vs checkpoint 20" in err.replace("\n", " ")


def test_init_from_another_architecture_names_the_fields(run_dir, tmp_path):
    err = _fails("l2o-train", *TINY_TRAIN, f"init={run_dir}", "optimizer.hidden_size=7",
                 f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "hidden_size: config 7 vs checkpoint 20" in err.replace("\n", " ")
    assert not (tmp_path / "run" / "checkpoints").exists()
    err = _fails("l2o-train", *TINY_TRAIN, f"init={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "nope" in err and "does not exist" in err


def test_unknown_baseline_and_metric(run_dir, tmp_path):
    err = _fails("l2o-eval", f"checkpoint={run_dir}", "compare=[adam,lbfgs]", *TINY_EVAL, cwd=tmp_path)
    assert "lbfgs" in err and "'sgd', 'rmsprop', 'adam', 'nag'" in err
    err = _fails("l2o-eval", f"checkpoint={run_dir}", "tuning.metric=median", *TINY_EVAL, cwd=tmp_path)
    assert "tuning.metric='median'" in err and "final, sum, tail" in err


def test_checkpoint_directory_without_checkpoints(tmp_path):
    err = _fails("l2o-eval", f"checkpoint={tmp_path}", *TINY_EVAL, cwd=tmp_path)
    assert "best.pt" in err


def test_wrong_format_version(run_dir, tmp_path):
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    ckpt["format_version"] = 99
    torch.save(ckpt, tmp_path / "future.pt")
    err = _fails("l2o-eval", f"checkpoint={tmp_path / 'future.pt'}", *TINY_EVAL, cwd=tmp_path)
    assert "format version 99" in err


@pytest.mark.parametrize(
    "overrides, words",
    [
        (("truncation=adaptive", "schedule.truncation.horizons=[20,10]"), ["schedule.truncation.horizons=[20, 10]", "increasing"]),
        (("truncation=adaptive", "schedule.truncation.stage_epochs=[5]"),
         ["schedule.truncation.stage_epochs=[5]", "one positive integer per stage"]),
        (("imitation=adam", "schedule.imitation.probability=2"), ["schedule.imitation.probability=2", "[0, 1]"]),
        (("scaling=random", "schedule.scaling.param_range=-1"), ["schedule.scaling.param_range=-1", ">= 0"]),
        (("optimizee=mnist_mix", "+optimizee.weights.mlp_tanh=1"), ["optimizee.weights", "mlp_tanh", "not members"]),
        # a key meant for another truncation (as experiment=cifar10_cpu's validate_at under truncation=adaptive)
        (("truncation=adaptive", "+schedule.truncation.validate_at=[10]"),
         ["schedule.truncation.validate_at is not a setting of l2o.meta.truncation.Adaptive", "'~schedule.truncation.validate_at'"]),
    ],
)
def test_stability_options_reject_bad_values_before_any_work(tmp_path, overrides, words):
    run = tmp_path / "run"
    err = _fails("l2o-train", *TINY_TRAIN, *overrides, f"hydra.run.dir={run}", cwd=tmp_path)
    for w in words:
        assert w in err.replace("\n", " "), (w, err)
    assert not (run / "checkpoints").exists()


def test_eval_refuses_a_training_mix_as_the_test_setting(tmp_path, run_dir):
    err = _fails("l2o-eval", f"checkpoint={run_dir}", "optimizee=mnist_mix", *TINY_EVAL, cwd=tmp_path)
    assert "training mix" in err and "optimizee=mnist_mlp" in err
