"""l2o-study: the smoke study run end to end through the real CLI (every code path of the other
studies on tiny budgets), its report read back against the runs, reruns that do no work, a run
directory with another config refused by key, and the study files' validation.

The tests that run studies are marked `smoke`: `./scripts/test.sh` runs them after the default
suite, as CI does (`pytest -m smoke` alone); the validation tests at the end run in the default suite."""
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli
from l2o.errors import L2OError
from l2o.study.spec import Resolver, load


def study(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli("l2o-study", *args, cwd=cwd, check=check)


def files_written(root: Path) -> dict[Path, int]:
    """Every file under the study's run directories, with its modification time: unchanged means no work."""
    return {p: p.stat().st_mtime_ns for p in (root / "outputs/study").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`l2o-study run smoke` once, in a fresh folder (its run directories under outputs/study)."""
    root = tmp_path_factory.mktemp("study")
    proc = study("run", "smoke", cwd=root)
    assert "all 21 units done" in proc.stdout, proc.stdout + proc.stderr
    return root


@pytest.mark.smoke
def test_list_names_every_study_with_its_units_and_cpu_time(tmp_path):
    out = study("list", cwd=tmp_path).stdout
    for name in ("paper", "architectures", "long_horizon", "smoke"):
        assert re.search(rf"^{name} \(version \d+\)", out, re.M), name
    assert re.search(r"^  21 units, CPU time at size cpu on 2 cores: ~\d+ min", out, re.M)
    assert "    cifar10/train_sub" in out and "(from study paper)" in out   # a unit another study shares


@pytest.mark.smoke
def test_smoke_runs_every_unit_and_records_where_and_how_long(smoke):
    units = sorted(p.parent for p in (smoke / "outputs/study/cpu/smoke").rglob("unit.json"))
    assert len(units) == 21
    for unit in units:
        record = json.loads((unit / "unit.json").read_text())
        (session,) = record["sessions"]
        assert session["status"] == "COMPLETED" and session["seconds"] > 0 and session["machine"]["cores"] >= 1
        assert 0 < session["cpu_seconds"] == record["cpu_seconds"]
        assert (unit / ("result.json" if unit.name.startswith("train") else "summary.json")).is_file()
    status = study("status", "smoke", cwd=smoke).stdout
    assert "smoke: 21 done, 0 running, 0 partial, 0 missing of 21 units" in status
    assert not list((smoke / "outputs/study/cpu/smoke").rglob("running.json"))   # removed when each job ended


@pytest.mark.smoke
def test_second_run_does_no_work(smoke):
    before = files_written(smoke)
    proc = study("run", "smoke", cwd=smoke)
    assert "all 21 units done" in proc.stdout and "wave" not in proc.stdout
    assert before == files_written(smoke)


@pytest.mark.smoke
def test_report_cells_come_from_the_runs(smoke):
    (smoke / "README.md").write_text("intro\n<!-- l2o-study report smoke: start -->\nstale\n"
                                     "<!-- l2o-study report smoke: end -->\noutro\n")
    study("report", "smoke", "out=docs/results", cwd=smoke)
    page = (smoke / "docs/results/smoke.md").read_text()
    summary = json.loads((smoke / "outputs/study/cpu/smoke/quadratic/eval/summary.json").read_text())["optimizers"]
    for name in ("lstm", "lstm_gac", "rnnprop", "adam_lstm", "sgd", "rmsprop", "adam", "nag"):
        row = summary[name]
        final = f"{row['final_loss']:.4g} ± {(row['final_loss_ci95'][1] - row['final_loss_ci95'][0]) / 2:.2g}"
        label = f"**{name}**" if row["lr"] is None else name
        assert re.search(rf"^\| quadratics \| {re.escape(label)} \| [^|]+ \| [^|]+ \| \**{re.escape(final)}\** \|", page, re.M), name
    assert "![neural art: every optimizer's image](smoke/art-eval-images.png)" in page
    assert "\nOptimizee: neural art 16×16, style ihc.png, features: cifar_vgg" in page   # from its run
    for figure in ("quadratics-every-architecture.png", "architecture-sweep.png", "art-eval-images.png"):
        assert (smoke / "docs/results/smoke" / figure).is_file()
    assert "`smoke:mnist/eval`: `l2o-eval experiment=mnist" in page and "2 cores" in page
    assert "| `smoke:mnist/train_time` | 2 | " in page   # the training table
    readme = (smoke / "README.md").read_text()
    assert readme.startswith("intro\n") and readme.endswith("outro\n") and "stale" not in readme
    # a study with no paper values has no paper columns
    assert f"| 10 steps | 10 | lstm {summary['lstm']['final_loss']:.3g}" in readme and "paper figure" not in readme
    assert "[docs/results/smoke.md](docs/results/smoke.md)" in readme


@pytest.mark.smoke
def test_run_dir_with_another_config_is_refused_naming_the_key(smoke):
    saved = smoke / "outputs/study/cpu/smoke/mnist/eval/.hydra/config.yaml"
    original = saved.read_text()
    cfg = yaml.safe_load(original)
    cfg["tuning"]["num"] = 5
    saved.write_text(yaml.safe_dump(cfg))
    try:
        for command in ("run", "report"):
            proc = study(command, "smoke", cwd=smoke, check=False)
            assert proc.returncode == 2 and "smoke:mnist/eval" in proc.stderr and "tuning.num: 5 -> 3" in proc.stderr
        assert "(config or φ differs: refused)" in study("status", "smoke", cwd=smoke).stdout
    finally:
        saved.write_text(original)


@pytest.mark.smoke
def test_a_setting_on_the_command_line_that_changes_a_finished_unit_is_refused(smoke):
    """`l2o-study run smoke schedule.epochs=3` would not make what the finished units' directories
    hold: refused, naming the key, rather than reported as done. Run settings (threads=) are no change."""
    before = files_written(smoke)
    proc = study("run", "smoke", "units=quadratic/train", "schedule.epochs=3", cwd=smoke, check=False)
    assert proc.returncode == 2 and "smoke:quadratic/train" in proc.stderr, proc.stdout + proc.stderr
    assert "schedule.epochs: 2 -> 3" in proc.stderr
    assert before == files_written(smoke)
    assert "all 1 units done" in study("run", "smoke", "units=quadratic/train", "threads=1", "workers=1", cwd=smoke).stdout


@pytest.mark.smoke
def test_an_evaluation_of_a_retrained_checkpoint_is_refused(smoke):
    """The same overrides compose the same config, but a φ trained again into the training unit's
    directory makes its evaluations stale: refused, naming the optimizer and the checkpoint."""
    import torch

    best = smoke / "outputs/study/cpu/smoke/quadratic/train/checkpoints/best.pt"
    original = best.read_bytes()
    ckpt = torch.load(best, weights_only=True)
    key = next(iter(ckpt["optimizer_state"]))
    ckpt["optimizer_state"][key] = ckpt["optimizer_state"][key] + 1.0
    torch.save(ckpt, best)
    try:
        proc = study("run", "smoke", cwd=smoke, check=False)
        assert proc.returncode == 2 and "smoke:quadratic/eval" in proc.stderr, proc.stderr
        assert "φ in outputs/study/cpu/smoke/quadratic/train changed" in proc.stderr
        assert "smoke:quadratic/eval" in next(line for line in study("status", "smoke", cwd=smoke).stdout.splitlines()
                                              if "(config or φ differs: refused)" in line)
    finally:
        best.write_bytes(original)
    assert "smoke: all 21 units done" in study("run", "smoke", cwd=smoke).stdout


@pytest.mark.smoke
def test_the_record_restores_lost_run_directories(smoke, tmp_path):
    """A fresh clone holds the page and its record (docs/results/runs), not the run directories:
    status, run and report go on from the record, and the regenerated page is the same."""
    study("report", "smoke", "out=docs/results", "readme=", cwd=smoke)
    record = smoke / "docs/results/runs/cpu/smoke"
    assert (record / "quadratic/train/checkpoints/best.pt").is_file() and (record / "quadratic/eval/curves.csv.gz").is_file()
    assert not list(record.rglob("*.csv"))   # kept gzipped
    assert not list(record.rglob("last.pt")) and not list(record.rglob("*.pt.tmp"))
    assert not [p for p in (record / "quadratic/eval/partial").iterdir() if p.is_dir()]   # no per-problem store
    # ... except the baselines' part of one that another unit names in baselines_from=
    kept = {p.name for p in (record / "mnist/long/partial").iterdir() if p.is_dir()}
    assert kept == {"sgd", "rmsprop", "adam", "nag"}, kept
    assert len(list((record / "mnist/long/partial/adam").glob("*.pt"))) == 2
    page = (smoke / "docs/results/smoke.md").read_text()

    clone = tmp_path / "clone"
    shutil.copytree(smoke / "docs", clone / "docs")
    proc = study("status", "smoke", cwd=clone)
    assert "smoke: 21 done, 0 running, 0 partial, 0 missing of 21 units" in proc.stdout
    assert "restored from the record" in proc.stderr
    proc = study("run", "smoke", cwd=clone)
    assert "all 21 units done" in proc.stdout and "wave" not in proc.stdout
    restored = clone / "outputs/study/cpu/smoke/quadratic/eval"
    assert (restored / "curves.csv").read_bytes() == (smoke / "outputs/study/cpu/smoke/quadratic/eval/curves.csv").read_bytes()
    assert not list(restored.rglob("*.gz"))
    study("report", "smoke", "out=docs/results", "readme=", cwd=clone)
    assert (clone / "docs/results/smoke.md").read_text() == page

    again = tmp_path / "again"   # an evaluation with baselines_from= a restored one copies its baselines, runs none
    shutil.copytree(smoke / "docs", again / "docs")
    shutil.rmtree(again / "docs/results/runs/cpu/smoke/mnist/long_again")
    proc = study("run", "smoke", "units=mnist/long_again", cwd=again)
    assert "baselines adam, nag reused from" in proc.stderr, proc.stderr
    unit = "outputs/study/cpu/smoke/mnist/long_again"
    ours, theirs = (json.loads((root / unit / "summary.json").read_text())["optimizers"] for root in (again, smoke))
    assert ours["adam"] == theirs["adam"] and ours["nag"] == theirs["nag"]

    other = tmp_path / "other"   # records=none: nothing restored; a record with another config: not restored
    shutil.copytree(smoke / "docs", other / "docs")
    assert "0 done, 0 running, 0 partial, 21 missing" in study("status", "smoke", "records=none", cwd=other).stdout
    saved = other / "docs/results/runs/cpu/smoke/quadratic/eval/.hydra/config.yaml"
    cfg = yaml.safe_load(saved.read_text())
    cfg["tuning"]["num"] = 5
    saved.write_text(yaml.safe_dump(cfg))
    proc = study("status", "smoke", cwd=other)
    assert "smoke:quadratic/eval: its record" in proc.stderr and "tuning.num: 5 -> 3" in proc.stderr
    assert "20 done, 0 running, 0 partial, 1 missing" in proc.stdout


def _user_study(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "conf"
    (conf / "study").mkdir(parents=True)
    (conf / "study" / "mine.yaml").write_text(textwrap.dedent(text))
    return conf


TINY = ("[experiment=quadratic, schedule.epochs=2, schedule.problems_per_epoch=2, schedule.horizon=6, schedule.unroll=3, "
        "schedule.val_every=1, schedule.num_val=2, progress=false")


@pytest.mark.smoke
def test_a_failing_unit_is_reported_and_the_others_still_run(tmp_path):
    conf = _user_study(tmp_path, f"""
        units:
          good: {{cli: train, overrides: {TINY}]}}
          bad: {{cli: train, overrides: {TINY}, guard.lr_factor=3]}}
          after_bad: {{cli: eval, overrides: [num_test=2, tuning.num=2, tuning.num_problems=2, progress=false], checkpoint: bad}}
        """)
    proc = study("run", "mine", f"--config-dir={conf}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "guard.lr_factor=3 must be a number in (0, 1)" in proc.stderr
    assert "2 unit(s) not done: mine:bad, mine:after_bad" in proc.stderr
    assert (tmp_path / "outputs/study/cpu/mine/good/result.json").is_file()


@pytest.mark.smoke
def test_a_stopped_unit_resumes(tmp_path):
    conf = _user_study(tmp_path, f"""
        units:
          t: {{cli: train, overrides: {TINY}]}}
        """)
    study("run", "mine", f"--config-dir={conf}", cwd=tmp_path)
    run = tmp_path / "outputs/study/cpu/mine/t"
    (run / "result.json").unlink()   # as if stopped after its last checkpoint
    assert "partial" in study("status", "mine", f"--config-dir={conf}", cwd=tmp_path).stdout
    import os
    import platform

    (run / "running.json").write_text(json.dumps({"pid": os.getpid(), "host": platform.node()}))   # a live process has it
    assert "mine:t                               train running" in study("status", "mine", f"--config-dir={conf}", cwd=tmp_path).stdout
    assert "left alone, another process is running them: mine:t" in study("run", "mine", f"--config-dir={conf}",
                                                                           cwd=tmp_path, check=False).stdout
    # a dead one: the session it was killed in is recorded as STOPPED, until the last file it wrote
    from datetime import datetime, timedelta, timezone

    started = (datetime.now(timezone.utc) - timedelta(seconds=50)).isoformat(timespec="seconds")
    (run / "running.json").write_text(json.dumps({"pid": 2**22 + 12345, "host": platform.node(), "started": started,
                                                  "threads": 3, "cpu_seconds": 7.5}))
    study("run", "mine", f"--config-dir={conf}", "threads=1", cwd=tmp_path)
    record = json.loads((run / "unit.json").read_text())
    first, stopped, resumed = record["sessions"]
    assert stopped["status"] == "STOPPED" and stopped["started"] == started and stopped["threads"] == 3
    assert resumed["threads"] == 1   # the job's threads=, not torch's count before the job sets it
    assert 0 < stopped["seconds"] <= 51 and resumed["status"] == "COMPLETED" and (run / "result.json").is_file()
    assert record["wall_seconds"] == pytest.approx(sum(s["seconds"] for s in record["sessions"]))
    assert stopped["cpu_seconds"] == 7.5 and first["cpu_seconds"] > 0 and resumed["cpu_seconds"] > 0   # its marker's last beat
    assert record["cpu_seconds"] == pytest.approx(sum(s["cpu_seconds"] for s in record["sessions"]))
    assert yaml.safe_load((run / ".hydra/overrides.yaml").read_text())[-2:] == ["resume=true", "threads=1"]


@pytest.mark.smoke
def test_a_stopped_unit_travels_in_the_record_and_resumes_on_a_fresh_clone(tmp_path):
    """A machine that is not kept (a new VM each session) loses its run directories: a stopped unit's
    work goes into the record, and a fresh clone resumes it where it stopped instead of starting over."""
    conf = _user_study(tmp_path, f"""
        units:
          t: {{cli: train, overrides: {TINY}]}}
          e: {{cli: eval, overrides: [experiment=quadratic, 'checkpoint={REPO}/l2o/pretrained/quadratic.pt', num_test=2,
                                      chunk_problems=1, steps=6, tuning.num=2, tuning.num_problems=2, progress=false]}}
        report: {{title: mine, sections: [{{title: e, panels: [{{unit: e}}]}}]}}
        """)
    first, clone = tmp_path / "first", tmp_path / "clone"
    first.mkdir()
    args = ("mine", f"--config-dir={conf}", "out=docs/results", "readme=")
    proc = study("status", *args[:2], cwd=first)   # no record at all: nothing to restore, nothing said
    assert "0 done, 0 running, 0 partial, 2 missing" in proc.stdout and "record" not in proc.stderr, proc.stderr
    study("run", *args[:2], cwd=first)
    t, e = (first / "outputs/study/cpu/mine" / n for n in ("t", "e"))
    finished = json.loads((e / "summary.json").read_text())
    # both stopped part-way by a process that died: no result, SGD's second problem not done
    (t / "result.json").unlink()
    (e / "summary.json").unlink()
    (e / "partial/sgd/00001.pt").unlink()
    kept_chunk = (e / "partial/sgd/00000.pt").read_bytes()
    from datetime import datetime, timedelta, timezone
    import platform

    started = (datetime.now(timezone.utc) - timedelta(seconds=30)).isoformat(timespec="seconds")
    (e / "running.json").write_text(json.dumps({"pid": 2**22 + 12345, "host": platform.node(), "started": started,
                                                "cpu_seconds": 4.5}))
    proc = study("report", *args, cwd=first)
    assert "recorded 0 finished unit(s) and 2 stopped one(s) (mine:t, mine:e)" in proc.stdout
    record = first / "docs/results/runs/cpu/mine"
    assert (record / "t/checkpoints/last.pt").is_file() and (record / "e/partial/sgd/00000.pt").is_file()
    assert not list(record.rglob("running.json")) and not list(record.rglob("curves.csv*"))
    sessions = json.loads((record / "e/unit.json").read_text())["sessions"]
    assert sessions[-1]["status"] == "STOPPED" and sessions[-1]["cpu_seconds"] == 4.5

    shutil.copytree(first / "docs", clone / "docs")   # the fresh clone: the record, no run directories
    proc = study("status", *args[:2], cwd=clone)
    assert "mine:t (stopped: it resumes), mine:e (stopped: it resumes)" in proc.stderr
    assert "0 done, 0 running, 2 partial, 0 missing of 2 units" in proc.stdout
    study("run", *args[:2], cwd=clone)
    t2, e2 = (clone / "outputs/study/cpu/mine" / n for n in ("t", "e"))
    assert (t2 / "result.json").is_file() and (e2 / "partial/sgd/00001.pt").is_file()
    assert (e2 / "partial/sgd/00000.pt").read_bytes() == kept_chunk   # resumed, not redone
    assert yaml.safe_load((e2 / ".hydra/overrides.yaml").read_text())[-1] == "resume=true"
    resumed = json.loads((e2 / "summary.json").read_text())
    assert resumed["optimizers"] == finished["optimizers"]   # the same results as the run that was never stopped
    sessions = json.loads((e2 / "unit.json").read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["COMPLETED", "STOPPED", "COMPLETED"]
    proc = study("report", *args, cwd=clone)   # finished now: its finished record replaces the stopped one
    assert "recorded 2 finished unit(s) in" in proc.stdout
    assert not list((clone / "docs/results/runs/cpu/mine").rglob("last.pt"))


@pytest.mark.parametrize("text, message", [
    ("units: {a: {cli: fit}}", "cli='fit' must be one of"),
    ("units: {a: {cli: eval, overrides: [steps=3]}}", "an eval unit needs checkpoint"),
    ("units: {a: {cli: train, checkpoint: b}}", "do not apply to cli=train"),
    ("units: {a: {cli: train, overrides: x}}", "overrides must be a list"),
    ("units: {A: {cli: train}}", "unit names are lowercase"),
    ("units: {a: {cli: train, colour: red}}", "unknown keys ['colour']"),
    ("unit: {}", "a study needs a non-empty mapping `units:`"),
])
def test_bad_study_files_are_refused_naming_the_problem(tmp_path, text, message):
    conf = _user_study(tmp_path, text)
    with pytest.raises(L2OError, match=re.escape(message)):
        load("mine", (str(conf),))


def test_references_become_paths_and_order_the_units(tmp_path):
    conf = _user_study(tmp_path, """
        units:
          ev: {cli: eval, overrides: [x=1], checkpoint: tr@checkpoints/best_stage1.pt, learned: {other: paper:mnist/train},
               baselines_from: base}
          base: {cli: eval, checkpoint: tr}
          tr: {cli: train, overrides: [experiment=mnist], sizes: {paper: [experiment=cifar10]}}
        """)
    resolver = Resolver("paper", tmp_path / "out", (str(conf),))
    ev = resolver.unit("mine", "ev")
    assert ev.overrides == ["x=1", f"checkpoint={tmp_path}/out/paper/mine/tr/checkpoints/best_stage1.pt",
                            f"baselines_from={tmp_path}/out/paper/mine/base", f"+learned.other={tmp_path}/out/paper/paper/mnist/train"]
    assert resolver.unit("mine", "tr").overrides == ["experiment=cifar10"]
    order = [u.label for u in resolver.closure("mine")]
    assert order.index("mine:tr") < order.index("mine:base") < order.index("mine:ev") and "paper:mnist/train" in order
    only = [u.label for u in resolver.closure("mine", ["e*"])]   # one unit and what it needs, needs first
    assert sorted(only) == ["mine:base", "mine:ev", "mine:tr", "paper:mnist/train"] and only[-1] == "mine:ev"
    assert [u.label for u in resolver.closure("mine", ["tr", "nothing*"])] == ["mine:tr"]
    with pytest.raises(L2OError, match="no unit of study mine matches units=x/\\*; its units: ev, base, tr"):
        resolver.closure("mine", ["x/*"])
    cyclic = _user_study(tmp_path / "c", "units: {a: {cli: train, init: b}, b: {cli: train, init: a}}")
    with pytest.raises(L2OError, match="cycle"):
        Resolver("cpu", tmp_path, (str(cyclic),)).closure("mine")


def test_an_absolute_root_inside_the_working_directory_gives_the_relative_paths(tmp_path, monkeypatch):
    """Units' paths go into their composed configs: root=$PWD/outputs/study and the default root must
    give the same ones, or a record made with one is refused by a clone run with the other."""
    conf = _user_study(tmp_path, "units: {tr: {cli: train}, ev: {cli: eval, checkpoint: tr}}")
    monkeypatch.chdir(tmp_path)
    for root in (tmp_path / "outputs/study", Path("outputs/study")):
        assert Resolver("cpu", root, (str(conf),)).unit("mine", "ev").overrides == ["checkpoint=outputs/study/cpu/mine/tr"]
    outside = tmp_path.parent / "elsewhere"
    assert Resolver("cpu", outside, (str(conf),)).unit("mine", "ev").overrides == [f"checkpoint={outside}/cpu/mine/tr"]


@pytest.mark.smoke
def test_every_shipped_study_resolves_and_composes():
    from l2o.study.spec import available
    from l2o.study.state import compose_configs

    for size in ("cpu", "paper"):
        resolver = Resolver(size, Path("outputs/study"))
        for name, path in available().items():
            if size not in load(name).sizes:
                continue
            units = resolver.closure(name)
            configs = compose_configs(units)
            assert len(configs) == len(units), name


def test_two_studies_launched_in_the_same_second_keep_their_own_units(tmp_path, monkeypatch):
    """Two lanes started together once wrote one wave file, so both trained the second lane's unit."""
    from l2o.study import runner
    from l2o.study.spec import Unit

    specs = []
    monkeypatch.setattr(runner.subprocess, "call", lambda cmd: specs.append(
        Path(next(c for c in cmd if c.startswith("hydra.sweeper.units=")).split("=", 1)[1])) or 0)
    monkeypatch.setattr(runner.time, "strftime", lambda fmt: "20261204-200435")
    for name in ("a", "b"):
        runner.launch([Unit("mine", name, "train", [f"x={name}"], tmp_path / "mine" / name)], "train", tmp_path, [], [], ())
    assert len(set(specs)) == 2
    assert [json.loads(s.read_text())[0]["overrides"][0] for s in specs] == ["x=a", "x=b"]


def test_an_option_added_with_a_null_default_does_not_invalidate_older_runs():
    from l2o.study.state import differences

    saved = {"optimizer": {"lr": 0.01}, "threads": 2}
    assert differences(saved, {"optimizer": {"lr": 0.01, "warmup": None}, "threads": 1}) == []
    assert differences(saved, {"optimizer": {"lr": 0.01, "warmup": 30}}) == ["optimizer.warmup: '<absent>' -> 30"]
    assert differences({"optimizer": {"warmup": 30}}, {"optimizer": {}}) == ["optimizer.warmup: 30 -> '<absent>'"]
    assert differences({"optimizer": {"warmup": None}}, {"optimizer": {"warmup": 30}}) == ["optimizer.warmup: None -> 30"]


def test_a_running_unit_keeps_its_cpu_time_in_its_marker(tmp_path, monkeypatch):
    """The marker is what a killed session's record is made from: its CPU time must be kept current."""
    import time
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from l2o.study import record

    monkeypatch.setattr(record, "HEARTBEAT_SECONDS", 0.05)
    config = OmegaConf.create({"threads": 1, "hydra": {"runtime": {"output_dir": str(tmp_path)}, "output_subdir": None,
                                                       "launcher": {"_target_": "x.BasicLauncher"}}})
    callback = record.UnitRecord()
    callback.on_job_start(config)
    marker = lambda: json.loads((tmp_path / record.RUNNING).read_text())  # noqa: E731
    assert marker()["cpu_seconds"] < 0.5
    end = time.process_time() + 0.6
    while time.process_time() < end:   # burn CPU time
        pass
    time.sleep(0.2)                    # a beat or more
    assert marker()["cpu_seconds"] >= 0.5
    callback.on_job_end(config, SimpleNamespace(status=SimpleNamespace(name="COMPLETED")))
    (session,) = json.loads((tmp_path / "unit.json").read_text())["sessions"]
    assert session["cpu_seconds"] >= 0.6 and not (tmp_path / record.RUNNING).exists()


def test_a_target_section_with_several_learned_optimizers_puts_them_side_by_side():
    """`target: {learned: [a, b], ...}`: each one's ratio to the baseline per unit, its counts, its step
    time as a multiple of the baseline's and its state; a unit not run yet is said so."""
    from types import SimpleNamespace

    from l2o.study.report import target_section

    def row(metric, step_ms, state, lr=None, diverged=0.0):
        return {"test_loss": metric, "step_ms": step_ms, "state_bytes_per_param": state, "lr": lr, "diverged": diverged}

    summaries = {"x": {"optimizers": {"adam": row(1.0, 2.0, 8, lr=0.001), "a": row(0.9, 20.0, 16), "b": row(1.2, 400.0, 320)}},
                 "y": {"optimizers": {"adam": row(2.0, 1.0, 8, lr=0.01), "a": row(2.08, 10.0, 16), "b": row(1.0, 300.0, 320, diverged=1 / 3)}},
                 "z": None}
    page = SimpleNamespace(unit=lambda name: SimpleNamespace(label=f"s:{name}", name=name),
                           summary=lambda u: summaries[u.name])
    lines = target_section(page, {"target": {"learned": ["a", "b"], "baseline": "adam", "metric": "test_loss",
                                             "ratio": 1.05, "units": ["x", "y", "z"]}})
    text = "\n".join(lines)
    assert "| `s:x` | 1 (0.001) | **0.9** (0.9) | 1.2 (1.2) |" in text
    assert "| `s:y` | 2 (0.01) | 1.04 (2.08) | **0.5** (1), 33% diverged |" in text   # within 1.05, but b diverged
    assert "| `s:z` | not run yet | not run yet | not run yet |" in text
    assert "| ≤ 1.05× / below adam | | 2 / 1 of 2 | 0 / 1 of 2 |" in text
    assert "| step time ÷ adam's | | 10× | 200-300× |" in text and "| state, bytes per parameter | | 16 | 320 |" in text
