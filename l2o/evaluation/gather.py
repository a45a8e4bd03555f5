"""Gather the `summary.json` files of an `l2o-eval --multirun` sweep into one table and plot.

Runs by itself at the end of a sweep (`GatherCallback`, wired in `experiment=mnist_sweep`),
or by hand:  python -m l2o.evaluation.gather outputs/mnist/sweep
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from l2o.evaluation.report import save_figure
from l2o.sweeps import job_config
from l2o.utils import atomic_write_text


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per (job, optimizer): the job's hidden widths and the optimizer's results."""
    rows = []
    for summary_path in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0):
        job = summary_path.parent
        hidden = list(((job_config(job).get("optimizee") or {}).get("hidden")) or [])
        summary = json.loads(summary_path.read_text())
        for name, res in summary["optimizers"].items():
            rows.append({"job": job.name, "hidden": hidden, "width": hidden[0] if hidden else 0, "layers": len(hidden),
                         "optimizer": name, **{k: v for k, v in res.items() if k != "final_loss_ci95"},
                         "ci_lo": res["final_loss_ci95"][0], "ci_hi": res["final_loss_ci95"][1]})
    return rows


def write(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["job", "layers", "width", "optimizer", "final_loss", "ci_lo", "ci_hi", "sum_loss", "lr", "diverged"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(sweep_dir / "sweep.csv", buf.getvalue())

    names = list(dict.fromkeys(r["optimizer"] for r in rows))
    depths = sorted({r["layers"] for r in rows})
    lines = ["| layers | width | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for d in depths:
        for width in sorted({r["width"] for r in rows if r["layers"] == d}):
            cells = {r["optimizer"]: r["final_loss"] for r in rows if r["layers"] == d and r["width"] == width}
            best = min(cells.values())
            lines.append(f"| {d} | {width} | " + " | ".join(
                (f"**{cells[n]:.4g}**" if cells.get(n) == best else f"{cells[n]:.4g}") if n in cells else "-" for n in names) + " |")
    atomic_write_text(sweep_dir / "sweep.md", "Final training loss (mean over test problems; best in bold)\n\n" + "\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, len(depths), figsize=(5.2 * len(depths), 4), dpi=120, squeeze=False)
    for ax, d in zip(axes[0], depths):
        for n in names:
            pts = sorted((r["width"], r["final_loss"], r["ci_lo"], r["ci_hi"]) for r in rows if r["layers"] == d and r["optimizer"] == n)
            if pts:
                xs, ys, lo, hi = zip(*pts)
                ax.errorbar(xs, ys, yerr=[[y - a for y, a in zip(ys, lo)], [b - y for y, b in zip(ys, hi)]],
                            marker="o", capsize=3, lw=2.2 if n == names[0] else 1.3, label=n)
        ax.set_yscale("log")
        ax.set_xlabel("hidden units per layer")
        ax.set_ylabel("final loss")
        ax.set_title(f"{d} hidden layer{'s' if d != 1 else ''}")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    save_figure(fig, sweep_dir / "sweep.png")


def gather(sweep_dir: str | Path) -> Path:
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    if not rows:
        raise SystemExit(f"no */summary.json under {sweep_dir}: is it an l2o-eval --multirun directory?")
    write(sweep_dir, rows)
    return sweep_dir


class GatherCallback(Callback):
    """Hydra callback: gather the sweep when the multirun ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        out = gather(config.hydra.sweep.dir)
        print(f"gathered {out}/sweep.md, sweep.csv, sweep.png")
        print((out / "sweep.md").read_text())


if __name__ == "__main__":
    gather(sys.argv[1])
    print((Path(sys.argv[1]) / "sweep.md").read_text())
