import json

import yaml

from l2o.evaluation.gather import gather


def _job(root, num, hidden, finals):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimizee": {"hidden": hidden}}))
    opts = {n: {"final_loss": f, "final_loss_ci95": [f * 0.9, f * 1.1], "sum_loss": 10 * f, "lr": None if n == "lstm" else 0.1,
                "diverged": 0.0} for n, f in finals.items()}
    (job / "summary.json").write_text(json.dumps({"optimizee": "mnist_mlp", "steps": 100, "num_problems": 8, "optimizers": opts}))


def test_gather_builds_one_table_csv_and_plot(tmp_path):
    _job(tmp_path, 0, [5], {"lstm": 0.4, "adam": 0.5})
    _job(tmp_path, 1, [20], {"lstm": 0.25, "adam": 0.3})
    _job(tmp_path, 2, [5, 5], {"lstm": 0.7, "adam": 0.6})
    gather(tmp_path)
    md = (tmp_path / "sweep.md").read_text()
    assert "| 1 | 5 | **0.4** | 0.5 |" in md and "| 2 | 5 | 0.7 | **0.6** |" in md
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 1 + 6
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
