"""Sweeps on real launchers and sweepers, gathered into one ranked table; HParams in TensorBoard."""
import csv
import json

import pytest
import yaml
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from conftest import TINY_EVAL, TINY_TRAIN, run_cli


def _gathered(sweep):
    rows = list(csv.DictReader((sweep / "gathered.csv").open()))
    return rows, (sweep / "gathered.md").read_text()


def _hparams_runs(logdir):
    """Runs under `logdir` holding a TensorBoard HParams session (what the HParams view lists)."""
    mux = EventMultiplexer().AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return {run for run, content in mux.PluginRunToTagToContent("hparams").items() if content}


def test_joblib_sweep_of_three_jobs_is_gathered_ranked(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("l2o-train", "--multirun", "hydra/launcher=local_parallel", "threads=1",
                   "schedule.meta_lr=1e-3,3e-3,1e-2", *TINY_TRAIN, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert "Joblib" in proc.stdout + proc.stderr  # really the joblib launcher
    rows, md = _gathered(sweep)
    assert sorted(float(r["schedule.meta_lr"]) for r in rows) == [1e-3, 3e-3, 1e-2]
    vals = [float(r["best_val"]) for r in rows]
    assert vals == sorted(vals) and [r["rank"] for r in rows] == ["1", "2", "3"]
    best = rows[0]
    assert f"**Best:** job {best['job']}" in md and best["checkpoint"].endswith("best.pt")
    assert json.loads((sweep / best["job"] / "result.json").read_text())["best_val"] == float(best["best_val"])
    assert (sweep / "gathered.png").read_bytes()[:4] == b"\x89PNG"   # its bars: the ranked best_val above
    # every job's hyperparameters against its metrics in TensorBoard's HParams view
    assert _hparams_runs(sweep) == {f"{j}/tb" for j in ("0", "1", "2")}


@pytest.mark.slow  # another launcher of the same multirun path as the joblib sweep
def test_submitit_local_sweep_of_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("l2o-train", "--multirun", "hydra/launcher=local_jobs", "threads=1", "optimizer.hidden_size=4,8",
            *TINY_TRAIN, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert list((sweep / ".submitit").iterdir())  # jobs went through submitit (logs, pickles)
    rows, _ = _gathered(sweep)
    assert sorted(r["optimizer.hidden_size"] for r in rows) == ["4", "8"]


@pytest.mark.slow  # another sweeper of the same multirun path as the joblib sweep
def test_optuna_sweep_of_four_trials_reports_its_best(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("l2o-train", "--multirun", "sweep=optuna", "hydra.sweeper.n_trials=4", *TINY_TRAIN,
            f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    rows, md = _gathered(sweep)
    assert len(rows) == 4
    assert float(rows[0]["best_val"]) == result["best_value"] == min(float(r["best_val"]) for r in rows)
    # the preset searches meta_lr, unroll and hidden_size; TINY_TRAIN's schedule.unroll=5 pins unroll
    assert set(result["best_params"]) == {"schedule.meta_lr", "optimizer.hidden_size"}
    assert 1e-4 <= result["best_params"]["schedule.meta_lr"] <= 3e-2


@pytest.mark.slow  # l2o-eval multiruns are covered by the smoke study's evaluation waves
def test_baseline_lr_sweep_of_eval_ranks_by_a_chosen_metric(tmp_path):
    run_cli("l2o-train", *TINY_TRAIN, f"hydra.run.dir={tmp_path / 'train'}", cwd=tmp_path)
    sweep = tmp_path / "esweep"
    run_cli("l2o-eval", "--multirun", "sweep=baseline_lr", "lr=1e-3,1e-1", f"checkpoint={tmp_path / 'train'}",
            "compare=[adam,sgd]", *TINY_EVAL, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    summaries = [json.loads((sweep / j / "summary.json").read_text()) for j in ("0", "1")]
    assert [s["optimizers"]["adam"]["lr"] for s in summaries] == [1e-3, 1e-1]  # tuning off, the grid's lr
    proc = run_cli("python", "-m", "l2o.sweeps", str(sweep), "--metric", "final_loss/adam", cwd=tmp_path)
    rows, md = _gathered(sweep)
    adam = [float(r["final_loss/adam"]) for r in rows]
    assert adam == sorted(adam) and "ranked by `final_loss/adam`" in md and "Best:" in proc.stdout
    bad = run_cli("python", "-m", "l2o.sweeps", str(sweep), "--metric", "nope", cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "final_loss/adam" in bad.stderr  # names the metrics it has
