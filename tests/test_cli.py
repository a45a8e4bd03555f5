"""The real console scripts on tiny configs, as a user runs them."""
import json
import math
import shutil
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_EVAL, TINY_TRAIN, run_cli

NAMES = ("lstm", "sgd", "rmsprop", "adam", "nag")


def _scalar_tags(logdir):
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return set(acc.Tags()["scalars"]), acc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    run = root / "train"
    proc = run_cli("l2o-train", *TINY_TRAIN, f"hydra.run.dir={run}", cwd=root)
    assert "checkpoint" in proc.stdout and "tensorboard --logdir" in proc.stdout
    return root, run


def test_train_writes_checkpoints_and_tensorboard_scalars(trained):
    _, run = trained
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    tags, acc = _scalar_tags(run / "tb")
    for tag in ("meta/loss", "train/final_loss", "val/final_loss", "meta/grad_norm", "meta/lr",
                "perf/optimizee_steps_per_s"):
        assert tag in tags, tag
    assert [e.step for e in acc.Scalars("meta/loss")] == [0, 1, 2, 3]
    assert [e.step for e in acc.Scalars("val/final_loss")] == [1, 3]


def test_eval_writes_every_result_file(trained):
    root, run = trained
    out = root / "eval"
    proc = run_cli("l2o-eval", f"checkpoint={run}", *TINY_EVAL, f"hydra.run.dir={out}", cwd=root)
    assert "| optimizer |" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizee"] == "quadratic" and summary["steps"] == 10 and summary["num_problems"] == 8
    assert set(summary["optimizers"]) == set(NAMES)
    import torch

    for name, row in summary["optimizers"].items():
        assert set(row) == {"final_loss", "final_loss_ci95", "final_log_loss", "sum_loss", "lr", "diverged"}
        # every number recomputed from the saved per-problem losses (8 problems): a problem whose loss
        # ever went non-finite or above 10× its initial loss (divergence_factor) is counted as
        # diverged and left out of the loss statistics
        losses = torch.load(out / "partial" / name / "00000.pt", weights_only=True)["losses"].double()
        bad = (~torch.isfinite(losses) | (losses > 10 * losses[0])).any(0)
        assert row["diverged"] == pytest.approx(float(bad.double().mean()))
        final = losses[-1, ~bad]
        half = 1.959963984540054 * final.std() / math.sqrt(len(final))
        assert row["final_loss"] == pytest.approx(float(final.mean()), rel=1e-6)
        assert row["final_loss_ci95"] == pytest.approx([float(final.mean() - half), float(final.mean() + half)], rel=1e-6)
        assert row["final_log_loss"] == pytest.approx(float(final.log().mean()), rel=1e-6)
        assert (row["lr"] is None) == (name == "lstm")
    tuning = json.loads((out / "tuning.json").read_text())
    assert len(tuning["grid"]) == 3 and set(tuning["selected"]) == set(NAMES) - {"lstm"}
    assert (out / "summary.md").read_text().count("\n| ") == 6
    lines = (out / "curves.csv").read_text().splitlines()
    assert lines[0].startswith("optimizer,step,mean,ci95_lo,ci95_hi") and len(lines) == 1 + 5 * 11
    from l2o.evaluation.report import read_curves_csv   # what loss.png draws: the final points are the summary's

    bands = read_curves_csv(out / "curves.csv")
    for name, row in summary["optimizers"].items():
        mean, lo, hi = bands[name]
        assert len(mean) == 11 and mean[-1] == pytest.approx(row["final_loss"]) and [lo[-1], hi[-1]] == pytest.approx(row["final_loss_ci95"])
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in NAMES:
        tags, acc = _scalar_tags(out / "tb" / name)
        assert "eval/loss" in tags and len(acc.Scalars("eval/loss")) == 11


def test_an_evaluation_killed_part_way_resumes_to_the_same_summary(trained):
    """8 test problems in chunks of 3 (15 units) after tuning on a 5-step horizon (4 units); the
    process SIGKILLs itself after 6 saved units, then after 5 more, and resume=true finishes it."""
    root, run = trained
    args = (f"checkpoint={run}", *TINY_EVAL, "chunk_problems=3", "tuning.steps=5")
    whole, killed = root / "eval_whole", root / "eval_killed"
    run_cli("l2o-eval", *args, f"hydra.run.dir={whole}", cwd=root)
    proc = run_cli("l2o-eval", *args, f"hydra.run.dir={killed}", cwd=root, check=False, kill_after=6)
    assert proc.returncode == -9 and not (killed / "summary.json").exists()
    assert len(list((killed / "partial").glob("*/*.pt"))) == 2
    assert (killed / "curves.csv").exists() and (killed / "loss.png").exists()  # written as they come
    proc = run_cli("l2o-eval", *args, f"hydra.run.dir={killed}", cwd=root, check=False)
    assert proc.returncode != 0 and "resume=true" in proc.stderr
    proc = run_cli("l2o-eval", *args, "resume=true", f"hydra.run.dir={killed}", cwd=root, check=False, kill_after=5)
    assert proc.returncode == -9 and len(list((killed / "partial").glob("*/*.pt"))) == 7
    run_cli("l2o-eval", *args, "resume=true", f"hydra.run.dir={killed}", cwd=root)
    assert json.loads((killed / "summary.json").read_text()) == json.loads((whole / "summary.json").read_text())
    assert (killed / "curves.csv").read_text() == (whole / "curves.csv").read_text()
    tuning = json.loads((whole / "tuning.json").read_text())
    assert tuning["steps"] == 5 and tuning == json.loads((killed / "tuning.json").read_text())
    proc = run_cli("l2o-eval", *args, "resume=true", "steps=7", f"hydra.run.dir={killed}", cwd=root, check=False)
    assert proc.returncode != 0 and "different settings (steps)" in proc.stderr


def test_resuming_an_evaluation_of_another_phi_is_refused(tmp_path):
    """meta.json keeps each learned optimizer's φ fingerprint: resuming with a φ trained again is
    refused; an evaluation saved before fingerprints were recorded resumes as before."""
    from types import SimpleNamespace

    from l2o.errors import L2OError
    from l2o.evaluation.evaluate import Partial

    tuning = SimpleNamespace(metric="final", grid=[], steps=5, num_problems=1)
    settings = {"steps": 5, "checkpoints": {"lstm": "run"}}
    Partial(tmp_path / "old" / "partial", settings, False, tuning)
    Partial(tmp_path / "old" / "partial", {**settings, "fingerprints": {"lstm": "aaaa"}}, True, tuning)
    Partial(tmp_path / "new" / "partial", {**settings, "fingerprints": {"lstm": "aaaa"}}, False, tuning)
    with pytest.raises(L2OError, match=r"different settings \(fingerprints\)"):
        Partial(tmp_path / "new" / "partial", {**settings, "fingerprints": {"lstm": "bbbb"}}, True, tuning)


def test_parallel_workers_give_the_sequential_summary(trained):
    """workers=2: units run in two one-thread worker processes; the results equal one process's
    (to float tolerance: the thread count may change summation order)."""
    root, run = trained
    args = (f"checkpoint={run}", *TINY_EVAL, "chunk_problems=3")
    one, two = root / "eval_one", root / "eval_two"
    run_cli("l2o-eval", *args, f"hydra.run.dir={one}", cwd=root)
    run_cli("l2o-eval", *args, "workers=2", f"hydra.run.dir={two}", cwd=root)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert a["optimizers"].keys() == b["optimizers"].keys()
    for name in a["optimizers"]:
        assert a["optimizers"][name]["lr"] == b["optimizers"][name]["lr"]
        assert a["optimizers"][name]["final_loss"] == pytest.approx(b["optimizers"][name]["final_loss"], rel=1e-5)
    assert len(list((two / "partial").glob("*/*.pt"))) == 15


def test_eval_accepts_a_checkpoint_file_and_steps(trained):
    root, run = trained
    out = root / "eval_file"
    run_cli("l2o-eval", f"checkpoint={run}/checkpoints/last.pt", "steps=6", "compare=[adam]", *TINY_EVAL,
            f"hydra.run.dir={out}", cwd=root)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and set(summary["optimizers"]) == {"lstm", "adam"}


@pytest.mark.slow  # every study unit is a multirun job; test_sweeps' joblib sweep covers a swept value
def test_two_value_multirun_for_both_clis(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("l2o-train", "--multirun", "schedule.meta_lr=1e-3,3e-3", *TINY_TRAIN, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.pt").is_file()
    esweep = tmp_path / "esweep"
    run_cli("l2o-eval", "--multirun", f"checkpoint={sweep}/0", "steps=4,8", *TINY_EVAL, f"hydra.sweep.dir={esweep}",
            cwd=tmp_path)
    assert [json.loads((esweep / j / "summary.json").read_text())["steps"] for j in ("0", "1")] == [4, 8]


def test_experiment_presets_compose(tmp_path):
    run = tmp_path / "dm"
    run_cli("l2o-train", "experiment=quadratic", "optimizer=lstm_dm", "optimizee.distribution=uniform", *TINY_TRAIN,
            f"hydra.run.dir={run}", cwd=tmp_path)
    import torch

    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["optimizer"] == {"_target_": "l2o.optimizers.lstm.CoordinatewiseLSTM", "hidden_size": 20, "num_layers": 2,
                                 "preprocess_p": 5.0, "output_scale": 0.01, "odd": False,
                                 "time_scales": None}
    assert ckpt["optimizee"]["config"]["distribution"] == "uniform"
    assert ckpt["config"]["schedule"]["problems_per_epoch"] == 4  # the command line wins over the preset


@pytest.mark.slow  # the smoke study trains and evaluates LSTM+GAC, RNNprop and AdamLSTM through the CLIs
@pytest.mark.parametrize("arch", ["lstm_gac", "rnnprop"])
def test_other_architectures_train_and_evaluate_through_the_clis(tmp_path, arch):
    run = tmp_path / arch
    run_cli("l2o-train", f"optimizer={arch}", *TINY_TRAIN, f"hydra.run.dir={run}", cwd=tmp_path)
    import torch

    assert torch.load(run / "checkpoints" / "best.pt", weights_only=True)["optimizer"]["_target_"].endswith(
        {"lstm_gac": "LSTMGAC", "rnnprop": "RNNprop"}[arch])
    out = tmp_path / f"{arch}_eval"
    run_cli("l2o-eval", f"checkpoint={run}", "compare=[adam]", *TINY_EVAL, f"hydra.run.dir={out}", cwd=tmp_path)
    summary = json.loads((out / "summary.json").read_text())["optimizers"]
    assert set(summary) == {arch, "adam"} and summary[arch]["lr"] is None


def test_a_diverging_optimizer_is_reported_not_fatal(trained):
    root, run = trained
    out = root / "eval_div"
    proc = run_cli("l2o-eval", f"checkpoint={run}", *TINY_EVAL, "tuning.enabled=false", "baselines.sgd.lr=10",
                   f"hydra.run.dir={out}", cwd=root)
    summary = json.loads((out / "summary.json").read_text())["optimizers"]
    assert summary["sgd"]["diverged"] == 1.0 and summary["sgd"]["lr"] == 10
    assert math.isnan(summary["sgd"]["final_log_loss"])  # no problem left to average
    assert summary["adam"]["diverged"] == 0.0 and summary["adam"]["final_loss"] > 0  # the others are untouched
    assert "| sgd | 10 |" in proc.stdout and "100% |" in proc.stdout
    assert (out / "loss.png").exists()


def test_eval_returns_the_main_learned_optimizers_loss_with_extra_learned_ones(tmp_path):
    """What sweepers (optuna) minimise: the main optimizer's final loss, also with +learned."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from l2o.cli.common import CONF_DIR
    from l2o.cli.eval import run

    pretrained = Path(__file__).resolve().parents[1] / "l2o" / "pretrained"
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("eval", overrides=[f"checkpoint={pretrained / 'quadratic.pt'}", "name=main",
                                         f"+learned.other={pretrained / 'mnist.pt'}", "compare=[]", "steps=20",
                                         *TINY_EVAL, f"hydra.run.dir={tmp_path}"], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)
        HydraConfig.instance().set_config(cfg)
        returned = run(cfg)
    summary = json.loads((tmp_path / "summary.json").read_text())["optimizers"]
    assert returned == summary["main"]["final_loss"] != summary["other"]["final_loss"]


def test_eval_learned_settings_change_a_deployment_field_and_keep_the_checkpoints_fingerprint(tmp_path, capsys):
    """+learned_settings.NAME.FIELD=VALUE evaluates a learned optimizer with a field that holds no
    weights changed (here a longer warm-up than the shipped `general`'s 30 steps): other results,
    the same φ fingerprint recorded (the checkpoint is unchanged); a name that is not a learned
    optimizer, or a field its architecture lacks, is an error that names it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from l2o.cli.common import CONF_DIR
    from l2o.cli.eval import run

    general = Path(__file__).resolve().parents[1] / "l2o" / "pretrained" / "general.pt"

    def evaluate(out, *extra):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("eval", overrides=[f"checkpoint={general}", "name=shipped", "optimizee=quadratic",
                                             f"+learned.slow={general}", "compare=[]", "steps=20", *TINY_EVAL,
                                             *extra, f"hydra.run.dir={out}"], return_hydra_config=True)
            with open_dict(cfg):
                cfg.hydra.runtime.output_dir = str(out)
            HydraConfig.instance().set_config(cfg)
            return run(cfg)

    evaluate(tmp_path, "+learned_settings.slow.warmup=1000")
    summary = json.loads((tmp_path / "summary.json").read_text())["optimizers"]
    assert summary["shipped"]["final_loss"] != summary["slow"]["final_loss"]
    prints = json.loads((tmp_path / "partial" / "meta.json").read_text())["fingerprints"]
    assert prints["shipped"] == prints["slow"]
    for setting, message in (("other.warmup=10", "unknown: ['other']"), ("slow.bogus=1", "unexpected keyword argument 'bogus'")):
        with pytest.raises(SystemExit) as exit_:
            evaluate(tmp_path / "bad", f"+learned_settings.{setting}")
        assert exit_.value.code == 2 and message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # smoke trains the stable recipes; test_stability runs them in process
def test_stable_recipe_trains_through_the_cli_and_its_presets_compose(tmp_path):
    import torch

    run = tmp_path / "stable"
    tiny = ("schedule.epochs=8", "schedule.problems_per_epoch=4", "schedule.unroll=5", "schedule.val_every=1",
            "schedule.num_val=4", "schedule.truncation.horizons=[10,20]", "schedule.truncation.patience=1",
            "schedule.truncation.stage_epochs=[3,3]", "schedule.imitation.probability=[0.0,1.0]", "progress=false")
    run_cli("l2o-train", "experiment=quadratic", "recipe=stable_quadratic", "scaling=random", *tiny, f"hydra.run.dir={run}",
            cwd=tmp_path)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    sched = ckpt["schedule"]
    assert sched["truncation"]["_target_"].endswith("Adaptive") and sched["truncation"]["horizons"] == [10, 20]
    assert sched["imitation"]["teacher"]["lr"] == 0.3162 and sched["scaling"]["param_range"] == 3.0
    assert sched["imitation"]["probability"] == [0.0, 1.0]  # per stage: stage 0 never imitates, stage 1 always
    assert ckpt["training"]["truncation"]["stage"] == 1 and (run / "checkpoints" / "best_stage0.pt").exists()
    tags, acc = _scalar_tags(run / "tb")
    assert {"meta/stage", "meta/imitation_loss", "meta/loss"} <= tags
    assert json.loads((run / "result.json").read_text())["train_seconds"] > 0
    out = tmp_path / "stable_eval"
    run_cli("l2o-eval", f"checkpoint={run}", "compare=[adam]", "steps=40", *TINY_EVAL, f"hydra.run.dir={out}", cwd=tmp_path)
    assert json.loads((out / "summary.json").read_text())["steps"] == 40
    import yaml   # recipe=robust on RNNprop: the stable recipe cut to 100 -> 200
    robust = yaml.safe_load(run_cli("l2o-train", "experiment=mnist", "recipe=robust", "optimizer=rnnprop", "--cfg", "job",
                                    cwd=tmp_path).stdout)
    assert robust["optimizer"]["_target_"].endswith("RNNprop")
    assert robust["schedule"]["imitation"] and robust["schedule"]["scaling"]
    assert robust["schedule"]["truncation"]["horizons"] == [100, 200]
    protocol = yaml.safe_load(run_cli("l2o-eval", "experiment=mnist", "protocol=steps10000", "optimizee.activation=relu",
                                      "--cfg", "job", cwd=tmp_path).stdout)
    assert (protocol["steps"], protocol["num_test"], protocol["tuning"]["steps"], protocol["tuning"]["num_problems"]) == \
        (10000, 20, 1000, 5) and protocol["optimizee"]["activation"] == "relu"


def test_removed_presets_name_their_replacement(tmp_path, capsys):
    from l2o.cli.common import REMOVED_PRESETS, refuse_removed_presets

    for preset, replacement in (("mnist_steps200", "experiment=mnist protocol=steps200"),
                                ("mnist_stable_rnnprop", "experiment=mnist recipe=stable optimizer=rnnprop"),
                                ("cifar2_cpu", "experiment=cifar10_cpu optimizee.labels=[0,1]")):
        with pytest.raises(SystemExit) as exit_:
            refuse_removed_presets("l2o-eval", ["--multirun", f"experiment=mnist,{preset}"])
        assert exit_.value.code == 2 and f"experiment={preset} was removed; use {replacement}" in capsys.readouterr().err
    refuse_removed_presets("l2o-eval", ["experiment=mnist"])   # today's presets pass
    assert len(REMOVED_PRESETS) == 27
    proc = run_cli("l2o-train", "experiment=mnist_robust", cwd=tmp_path, check=False)   # and through the real CLI
    assert proc.returncode == 2 and "experiment=mnist_robust was removed; use experiment=mnist recipe=robust" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_experiment_presets_hold_only_the_papers_settings():
    from conftest import REPO

    presets = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
    assert len(presets) <= 12, presets
    assert {"quadratic", "mnist", "cifar10", "cifar10_cpu", "neural_art"} <= set(presets)


def test_stable_recipes_curricula_are_group_options_that_truncation_constant_replaces():
    """Switch the curriculum off with `truncation=constant`; the recipes' curricula are truncation
    options (not recipe keys), so nothing of theirs is left for Constant to refuse."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from conftest import REPO
    from l2o.meta.truncation import Adaptive, Constant

    expected = {("mnist", "stable"): ([100, 200, 500, 1000], 4, [300, 200, 100, 50]),
                ("mnist", "robust"): ([100, 200], 4, [300, 200]),
                ("quadratic", "stable_quadratic"): ([100, 200, 500, 1000], 6, [300, 200, 100, 50]),
                ("mnist", "cl_il"): ([100, 200, 500, 1000, 1500, 2000, 2500, 3000], 1, None)}  # Chen et al.: no budgets
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        for (experiment, recipe), (horizons, patience, stage_epochs) in expected.items():
            preset = [f"experiment={experiment}", f"recipe={recipe}"]
            trunc = compose("train", overrides=preset).schedule.truncation
            assert trunc._target_.endswith("Adaptive"), preset
            caps = None if trunc.stage_epochs is None else list(trunc.stage_epochs)
            assert (list(trunc.horizons), trunc.patience, caps) == (horizons, patience, stage_epochs), preset
            assert trunc.min_checks == (3 if recipe == "cl_il" else 1), preset
            assert isinstance(instantiate(trunc), Adaptive)
            off = compose("train", overrides=[*preset, "truncation=constant"]).schedule
            assert set(off.truncation) == {"_target_", "horizon", "validate_at"}, preset
            assert isinstance(instantiate(off).truncation, Constant)


def test_init_starts_a_new_run_from_a_trained_phi(trained, tmp_path):
    import torch
    _, run = trained
    src = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["optimizer_state"]
    out = tmp_path / "finetune"
    proc = run_cli("l2o-train", *TINY_TRAIN, f"init={run}", "schedule.meta_lr=1e-12", f"hydra.run.dir={out}",
                   cwd=tmp_path)
    assert "initialised from" in proc.stderr and str(run / "checkpoints" / "best.pt") in proc.stderr
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["config"]["init"] == str(run)
    fresh = tmp_path / "fresh"
    run_cli("l2o-train", *TINY_TRAIN, "schedule.meta_lr=1e-12", f"hydra.run.dir={fresh}", cwd=tmp_path)
    scratch = torch.load(fresh / "checkpoints" / "last.pt", weights_only=True)["optimizer_state"]
    for k, v in ckpt["optimizer_state"].items():
        assert torch.allclose(v, src[k], atol=1e-9), k   # the trained φ, barely moved by meta-lr 1e-12
    assert any(not torch.allclose(scratch[k], src[k], atol=1e-6) for k in src)   # not the seed's fresh φ


@pytest.mark.slow  # smoke adds step features through init=; test_lstm checks the φ it starts from
def test_init_adds_time_features_to_a_phi_trained_without_them(trained, tmp_path):
    import torch
    _, run = trained
    src = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["optimizer_state"]
    out = tmp_path / "timed"
    run_cli("l2o-train", *TINY_TRAIN, f"init={run}", "optimizer.time_scales=[5,50,500]", "schedule.meta_lr=1e-12",
            f"hydra.run.dir={out}", cwd=tmp_path)
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["optimizer"]["time_scales"] == [5.0, 50.0, 500.0]
    new, old = ckpt["optimizer_state"]["weights.0"], src["weights.0"]
    assert new.shape == (old.shape[0], old.shape[1] + 3)
    split = old.shape[1] - 1  # [h; x; 1]: the time inputs sit between x and the bias column
    assert torch.allclose(new[:, :split], old[:, :split], atol=1e-9)
    assert torch.allclose(new[:, -1], old[:, -1], atol=1e-9)
    assert new[:, split:split + 3].abs().max() < 1e-6   # started at zero, barely moved by meta-lr 1e-12
    # a φ that has time features is not silently loaded into a net without them
    proc = run_cli("l2o-train", *TINY_TRAIN, f"init={out}", f"hydra.run.dir={tmp_path / 'back'}", cwd=tmp_path,
                   check=False)
    assert proc.returncode != 0 and "time_scales" in proc.stderr


def test_baselines_from_reuses_an_earlier_evaluations_baselines(trained, tmp_path):
    """A second checkpoint evaluated against the first evaluation's baselines gives the same baseline
    rows (tuning and units copied, not rerun) and its own learned row; other settings are refused."""
    root, run = trained
    first = tmp_path / "first"
    run_cli("l2o-eval", f"checkpoint={run}", *TINY_EVAL, f"hydra.run.dir={first}", cwd=root)
    second = tmp_path / "second"
    proc = run_cli("l2o-eval", f"checkpoint={run}/checkpoints/last.pt", *TINY_EVAL, f"baselines_from={first}",
                   f"hydra.run.dir={second}", cwd=root)
    assert "baselines sgd, rmsprop, adam, nag reused" in proc.stderr
    full = tmp_path / "full"   # the same checkpoint evaluated from scratch: the same table
    run_cli("l2o-eval", f"checkpoint={run}/checkpoints/last.pt", *TINY_EVAL, f"hydra.run.dir={full}", cwd=root)
    a, b, c = (json.loads((d / "summary.json").read_text())["optimizers"] for d in (first, second, full))
    assert b == c
    for name in ("sgd", "rmsprop", "adam", "nag"):
        assert a[name] == b[name]
    for k in range(1):
        assert (second / "partial" / "adam" / f"{k:05d}.pt").read_bytes() == (first / "partial" / "adam" / f"{k:05d}.pt").read_bytes()
    kept = tmp_path / "kept"   # a source with its tuning and not its store (a study's record): only the runs are redone
    shutil.copytree(first, kept)
    for name in ("sgd", "rmsprop", "adam", "nag"):
        shutil.rmtree(kept / "partial" / name)
    tuning = json.loads((kept / "partial" / "tuning.json").read_text())
    other_lr = next(float(lr) for lr in tuning["scores"]["adam"] if float(lr) != tuning["selected"]["adam"])
    tuning["selected"]["adam"] = other_lr   # copied, not tuned again: adam runs at this lr
    (kept / "partial" / "tuning.json").write_text(json.dumps(tuning))
    proc = run_cli("l2o-eval", f"checkpoint={run}/checkpoints/last.pt", *TINY_EVAL, f"baselines_from={kept}",
                   f"hydra.run.dir={tmp_path / 'from_kept'}", cwd=root)
    assert "adam (its tuning and 0 of 1 chunks; 1 run here)" in proc.stderr, proc.stderr
    d = json.loads((tmp_path / "from_kept" / "summary.json").read_text())["optimizers"]
    assert d["adam"]["lr"] == other_lr and d["adam"]["final_loss"] != c["adam"]["final_loss"]
    assert all(d[name] == c[name] for name in c if name != "adam")
    bad = run_cli("l2o-eval", f"checkpoint={run}", *TINY_EVAL, "steps=6", f"baselines_from={first}",
                  f"hydra.run.dir={tmp_path / 'third'}", cwd=root, check=False)
    assert bad.returncode == 2 and "different settings (steps, tune_steps)" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "third").exists() or not (tmp_path / "third" / "partial").exists()   # nothing written
    bad = run_cli("l2o-eval", f"checkpoint={run}", *TINY_EVAL, "baselines.nag.momentum=0.5", f"baselines_from={first}",
                  f"hydra.run.dir={tmp_path / 'fourth'}", cwd=root, check=False)
    assert bad.returncode == 2 and "baselines.nag" in bad.stderr
