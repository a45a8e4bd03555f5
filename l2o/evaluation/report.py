"""Results as files: per-step curves (CSV), summary (JSON + Markdown), plot (PNG), TensorBoard."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Collection

from torch.utils.tensorboard import SummaryWriter

from l2o.evaluation.stats import Curve
from l2o.utils import atomic_write, atomic_write_text


# results beside the training loss, where an evaluation has them: held-out data (MNIST, CIFAR, the tasks)
# and the cost of a step (the tasks: median optimizer.step() time, optimizer state per parameter)
EXTRA_COLUMNS = ("test_loss", "test_accuracy", "step_ms", "state_bytes_per_param")


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def summarize(curves: dict[str, Curve], lrs: dict[str, float | None], optimizee: str, steps: int, n: int) -> dict[str, Any]:
    """The `summary.json` structure (documented in the README)."""
    out: dict[str, Any] = {"optimizee": optimizee, "steps": steps, "num_problems": n, "optimizers": {}}
    for name, c in curves.items():
        out["optimizers"][name] = {
            "final_loss": float(c.mean[-1]),
            "final_loss_ci95": [float(c.lo[-1]), float(c.hi[-1])],
            "final_log_loss": c.final_log_loss,
            "sum_loss": c.sum_loss,
            "lr": lrs.get(name),
            "diverged": c.diverged,
        }
    return out


def markdown_table(summary: dict[str, Any], learned: Collection[str], grid: list[float] | None = None,
                   untuned: Collection[str] = ()) -> str:
    """Final loss with its CI, sum of losses and the ratio to the best tuned baseline. `untuned`: the
    baselines whose every grid lr diverged in tuning (they ran at the grid's smallest)."""
    opts = summary["optimizers"]
    baselines = [v["final_loss"] for k, v in opts.items() if k not in learned and not math.isnan(v["final_loss"])]
    best_baseline = min(baselines) if baselines else math.nan
    extra = [k for k in EXTRA_COLUMNS if any(k in v for v in opts.values())]
    lines = [
        f"{summary['optimizee']}: {summary['num_problems']} test problems, {summary['steps']} steps",
        "",
        "| optimizer | lr | final loss (mean ± 95% CI) | sum of losses | final / best baseline | diverged |"
        + "".join(f" {k.replace('_', ' ')} |" for k in extra),
        "|---|---|---|---|---|---|" + "---|" * len(extra),
    ]
    for name, v in sorted(opts.items(), key=lambda kv: (math.isnan(kv[1]["final_loss"]), kv[1]["final_loss"])):
        half = (v["final_loss_ci95"][1] - v["final_loss_ci95"][0]) / 2
        ratio = v["final_loss"] / best_baseline if best_baseline and not math.isnan(best_baseline) else math.nan
        lr = "learned" if name in learned else _fmt(v["lr"]) if v["lr"] is not None else "default"
        div = f"{100 * v['diverged']:.0f}%"
        cells = "".join(f" {_fmt(v[k]) if k in v else '-'} |" for k in extra)
        lines.append(f"| {name} | {lr} | {_fmt(v['final_loss'])} ± {_fmt(half)} | {_fmt(v['sum_loss'])} | {ratio:.3f} | {div} |{cells}")
    if grid:
        edge = [n for n, v in opts.items() if v["lr"] is not None and n not in untuned
                and (v["lr"] >= max(grid) * 0.999 or v["lr"] <= min(grid) * 1.001)]
        if untuned:
            lines += ["", f"Note: every lr of the grid diverged in tuning for {', '.join(untuned)}, so they ran at the "
                      f"smallest, {min(grid):.3g}: look at the loss (is it finite at the start?) or lower tuning.low."]
        if edge:
            lines += ["", f"Note: the lr selected for {', '.join(edge)} is at the edge of the grid "
                      f"[{min(grid):.3g}, {max(grid):.3g}]; widen tuning.low/tuning.high."]
    return "\n".join(lines) + "\n"


def write_curves_csv(path: Path, curves: dict[str, Curve]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["optimizer", "step", "mean", "ci95_lo", "ci95_hi", "num_not_diverged"])
    for name, c in curves.items():
        for t in range(len(c.mean)):
            w.writerow([name, t, float(c.mean[t]), float(c.lo[t]), float(c.hi[t]), int(c.n[t])])
    atomic_write_text(path, buf.getvalue())


def write_tensorboard(tb_dir: Path, curves: dict[str, Curve]) -> None:
    """One run per optimizer, so TensorBoard overlays the curves under one tag."""
    for name, c in curves.items():
        with SummaryWriter(str(tb_dir / name)) as w:
            for t in range(len(c.mean)):
                if not math.isnan(float(c.mean[t])):
                    w.add_scalar("eval/loss", float(c.mean[t]), t)


def plot_curves(path: Path, curves: dict[str, Curve], lrs: dict[str, float | None], title: str) -> None:
    """Mean loss per step with its 95% band, log y-axis, as in the paper's figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    bands = {name: (c.mean.tolist(), c.lo.tolist(), c.hi.tolist()) for name, c in curves.items()}
    draw_curves(ax, bands, lrs, {name: c.diverged for name, c in curves.items()})
    ax.set_title(title)
    save_figure(fig, path)


BASELINE_COLORS = {"sgd": "tab:gray", "rmsprop": "tab:purple", "adam": "tab:red", "nag": "tab:green", "lbfgs": "tab:brown",
                   "lbfgs_wolfe": "black"}
LEARNED_COLORS = ("tab:blue", "tab:orange", "tab:cyan", "tab:olive", "tab:pink", "gold")


def colors_for(names: list[str], lrs: dict[str, float | None]) -> dict[str, str]:
    """One color per optimizer, the same in every panel: the baselines' fixed, learned ones in order."""
    learned = [n for n in dict.fromkeys(names) if lrs.get(n) is None and n not in BASELINE_COLORS]
    colors = {n: LEARNED_COLORS[i % len(LEARNED_COLORS)] for i, n in enumerate(learned)}
    return {**colors, **{n: c for n, c in BASELINE_COLORS.items() if n in names}}


def draw_curves(ax, bands: dict[str, tuple[list[float], list[float], list[float]]], lrs: dict[str, float | None],
                diverged: dict[str, float] | None = None, legend: bool = True, colors: dict[str, str] | None = None) -> None:
    """Curves (mean, 95% lo, 95% hi per step) on a log y-axis; learned optimizers (lr None) bold.
    A band whose lower end is at or near 0 (tiny losses, wide interval) is cut one decade below the
    mean, so it does not stretch the log axis down to 1e-12 and flatten every curve."""
    for name, (mean, lo, hi) in bands.items():
        steps = range(len(mean))
        label = name if lrs.get(name) is None else f"{name} (lr {lrs[name]:.3g})"
        if diverged and diverged.get(name, 0) > 0:
            label += f", {100 * diverged[name]:.0f}% diverged"
        lw = 2.2 if lrs.get(name) is None else 1.4
        (line,) = ax.plot(steps, mean, label=label, lw=lw, color=(colors or {}).get(name))
        ax.fill_between(steps, [max(v, m / 10) for v, m in zip(lo, mean)], hi, color=line.get_color(), alpha=0.18, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean over test problems)")
    ax.grid(True, which="both", alpha=0.25)
    if legend:
        ax.legend(fontsize=8)


def read_curves_csv(path: Path) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """The bands `write_curves_csv` wrote: {optimizer: (mean, lo, hi)} per step."""
    bands: dict[str, tuple[list[float], list[float], list[float]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            mean, lo, hi = bands.setdefault(row["optimizer"], ([], [], []))
            mean.append(float(row["mean"]))
            lo.append(float(row["ci95_lo"]))
            hi.append(float(row["ci95_hi"]))
    return bands


def save_figure(fig, path: Path) -> None:
    """Lay out, render to PNG in memory and write atomically (a plot is never half-written)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, lambda fh: fh.write(buf.getvalue()))


def write_all(out_dir: Path, curves: dict[str, Curve], lrs: dict[str, float | None], summary: dict[str, Any],
              learned: Collection[str], tuning: dict[str, Any]) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    untuned = [name for name, lr in tuning.get("selected", {}).items() if lr is None and name in summary["optimizers"]]
    table = markdown_table(summary, learned, tuning.get("grid"), untuned)
    write_curves_csv(out_dir / "curves.csv", curves)
    write_tensorboard(out_dir / "tb", curves)
    plot_curves(out_dir / "loss.png", curves, lrs, f"{summary['optimizee']}: mean loss over {summary['num_problems']} problems")
    atomic_write_text(out_dir / "tuning.json", json.dumps(tuning, indent=2))
    atomic_write_text(out_dir / "summary.md", table)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))  # last: its presence means "done"
    return table
