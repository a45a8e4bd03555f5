"""The `widths` view of the sweep gatherer (l2o.sweeps): final loss vs hidden width per depth."""
import json
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import REPO
from l2o.sweeps import GatherCallback, gather


def _job(root, num, hidden, finals):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optimizee.hidden={hidden}", "experiment=mnist", "protocol=sweep"]))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimizee": {"hidden": hidden}, "checkpoint": "ckpt"}))
    opts = {n: {"final_loss": f, "final_loss_ci95": [f * 0.9, f * 1.1], "sum_loss": 10 * f, "lr": None if n == "lstm" else 0.1,
                "diverged": 0.0} for n, f in finals.items()}
    (job / "summary.json").write_text(json.dumps({"optimizee": "mnist_mlp", "steps": 100, "num_problems": 8, "optimizers": opts}))


@pytest.fixture
def sweep(tmp_path):
    _job(tmp_path, 0, [5], {"lstm": 0.4, "adam": 0.5})
    _job(tmp_path, 1, [20], {"lstm": 0.25, "adam": 0.3})
    _job(tmp_path, 2, [5, 5], {"lstm": 0.7, "adam": 0.6})
    return tmp_path


def _check_widths(sweep):
    md = (sweep / "sweep.md").read_text()
    assert "| 1 | 5 | **0.4** | 0.5 |" in md and "| 2 | 5 | 0.7 | **0.6** |" in md
    import csv

    rows = list(csv.DictReader((sweep / "sweep.csv").open()))   # what sweep.png draws: a point per row
    assert len(rows) == 6 and {(r["layers"], r["width"], r["optimizer"], float(r["final_loss"])) for r in rows} >= {
        ("1", "5", "lstm", 0.4), ("2", "5", "adam", 0.6)}
    assert (sweep / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_widths_view_builds_one_table_csv_and_plot_beside_the_ranked_table(sweep, capsys):
    # as the widths view is configured: hydra.callbacks.gather.views=[widths]
    GatherCallback(views=OmegaConf.create(["widths"])).on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    _check_widths(sweep)
    assert "ranked by `final_loss/lstm`" in (sweep / "gathered.md").read_text()
    out = capsys.readouterr().out
    assert "best job 1" in out and f"view widths written to {sweep / 'sweep.md'}" in out


def test_widths_view_from_the_cli(sweep):
    proc = subprocess.run([sys.executable, "-m", "l2o.sweeps", str(sweep), "--view", "widths"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    _check_widths(sweep)
    assert (sweep / "gathered.md").exists() and "| layers | width | lstm | adam |" in proc.stdout


def test_no_view_unless_asked_and_unknown_views_are_refused(sweep):
    gather(sweep)
    assert (sweep / "gathered.md").exists() and not (sweep / "sweep.md").exists()
    with pytest.raises(ValueError, match="widths"):
        GatherCallback(views=["nope"])
