"""Gather a Hydra multirun directory (`l2o-train` or `l2o-eval` jobs) into one ranked table
(CSV + Markdown) and one plot, and name the best configuration and its checkpoint; optional
views (`VIEWS`) then present the same jobs another way, e.g. `widths`: final loss vs hidden width
per depth (the paper's MNIST architecture sweep) in sweep.{md,csv,png}.

Runs by itself at the end of every multirun (`GatherCallback`, wired in conf/train.yaml and
conf/eval.yaml; `hydra.callbacks.gather.views=[widths]` adds the widths view), whatever the launcher or
sweeper, or by hand:

    python -m l2o.sweeps outputs/multirun/train/2026-11-27_10-00-00 [--metric best_val] [--view widths]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from hydra.experimental.callback import Callback

from l2o.utils import atomic_write_text

TRAIN_METRIC = "best_val"
META = ("job", "params", "kind", "checkpoint", "config", "optimizers")  # a row's keys that are not results


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders (those holding `.hydra/overrides.yaml`), in job order."""
    jobs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def job_config(job: Path) -> dict[str, Any]:
    """The job's composed config as Hydra saved it (empty when missing)."""
    path = job / ".hydra" / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _overrides(job: Path) -> dict[str, str]:
    items = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in items)


def job_row(job: Path) -> dict[str, Any] | None:
    """A job's swept values, config and results: `result.json` of l2o-train (best_val, ...), or
    `summary.json` of l2o-eval (final_loss/<optimizer>, ..., and each optimizer's full results
    under `optimizers`, for the views). None for an unfinished job."""
    row: dict[str, Any] = {"job": job.name, "params": _overrides(job), "config": job_config(job)}
    if (job / "result.json").exists():
        result = json.loads((job / "result.json").read_text())
        row.update(kind="train", checkpoint=result.get("checkpoint"),
                   **{k: result[k] for k in ("best_val", "best_epoch", "epochs_run") if k in result})
    elif (job / "summary.json").exists():
        summary = json.loads((job / "summary.json").read_text())
        row.update(kind="eval", checkpoint=row["config"].get("checkpoint"), optimizers=summary["optimizers"])
        for name, res in summary["optimizers"].items():
            row[f"final_loss/{name}"] = res["final_loss"]
            row[f"lr/{name}"] = res.get("lr")
    else:
        return None
    return row


def default_metric(rows: list[dict[str, Any]]) -> str:
    if rows[0]["kind"] == "train":
        return TRAIN_METRIC
    return next(k for k in rows[0] if k.startswith("final_loss/"))  # the learned optimizer comes first


def rank(rows: list[dict[str, Any]], metric: str, maximize: bool = False) -> list[dict[str, Any]]:
    if any(metric not in r for r in rows):
        allowed = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        raise SystemExit(f"metric {metric!r} is not in every job's results; available: {', '.join(allowed)}")

    def key(r: dict[str, Any]) -> float:
        v = r[metric]
        v = math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        return -v if maximize and math.isfinite(v) else v

    return sorted(rows, key=key)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))


def split_params(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The overrides that vary between jobs (the table's columns) and those all jobs share."""
    params = list(dict.fromkeys(k for r in rows for k in r["params"]))
    values = {p: {r["params"].get(p) for r in rows} for p in params}
    fixed = {p: next(iter(v)) for p, v in values.items() if len(v) == 1 and len(rows) > 1}
    return [p for p in params if p not in fixed], fixed


def write(sweep_dir: Path, rows: list[dict[str, Any]], metric: str, skipped: list[str]) -> dict[str, Any]:
    params, fixed = split_params(rows)
    results = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in META]
    columns = ["rank", "job", *params, *results, "checkpoint"]
    table = [{"rank": i + 1, "job": r["job"], **{p: r["params"].get(p, "") for p in params},
              **{k: r.get(k) for k in results}, "checkpoint": r.get("checkpoint") or ""} for i, r in enumerate(rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(sweep_dir / "gathered.csv", buf.getvalue())

    best = rows[0]
    best_overrides = " ".join(f"{k}={best['params'][k]}" for k in params) or "(none)"
    md = [f"# Sweep {sweep_dir}", "", f"{len(rows)} jobs ranked by `{metric}`."
          + (f" Unfinished jobs left out: {', '.join(skipped)}." if skipped else ""), "",
          f"**Best:** job {best['job']}, `{metric}` = {_fmt(best[metric])}, "
          f"overrides `{best_overrides}`"
          + (f", checkpoint `{best['checkpoint']}`" if best.get("checkpoint") else ""), "",
          *([f"Shared by every job: `{' '.join(f'{k}={v}' for k, v in fixed.items())}`", ""] if fixed else []),
          "| " + " | ".join(c for c in columns if c != "checkpoint") + " |",
          "|" + "---|" * (len(columns) - 1)]
    for t in table:
        md.append("| " + " | ".join(_fmt(t[c]) for c in columns if c != "checkpoint") + " |")
    atomic_write_text(sweep_dir / "gathered.md", "\n".join(md) + "\n")
    plot(sweep_dir / "gathered.png", rows, metric)
    return {"job": best["job"], "metric": metric, "value": best[metric], "overrides": best["params"],
            "checkpoint": best.get("checkpoint")}


def plot(path: Path, rows: list[dict[str, Any]], metric: str) -> None:
    """Jobs as horizontal bars, best on top, labelled by their overrides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from l2o.evaluation.report import save_figure

    params, _ = split_params(rows)
    labels = [" ".join(f"{k.split('.')[-1]}={r['params'].get(k, '')}" for k in params) or f"job {r['job']}" for r in rows]
    values = [r[metric] if r[metric] is not None and math.isfinite(r[metric]) else float("nan") for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.5), dpi=120)
    ax.barh(range(len(rows)), values, color=["tab:orange"] + ["tab:blue"] * (len(rows) - 1))
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(metric)
    ax.set_title(f"{path.parent.name}: {len(rows)} jobs ranked by {metric}")
    ax.grid(True, axis="x", alpha=0.25)
    fig.tight_layout()
    save_figure(fig, path)


def width_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (l2o-eval job, optimizer): the job's hidden widths and the optimizer's results."""
    if any("optimizers" not in r for r in rows):
        raise SystemExit("the widths view needs l2o-eval jobs (summary.json), swept over optimizee.hidden")
    out = []
    for r in rows:
        hidden = list((r["config"].get("optimizee") or {}).get("hidden") or [])
        for name, res in r["optimizers"].items():
            out.append({"job": r["job"], "layers": len(hidden), "width": hidden[0] if hidden else 0, "optimizer": name,
                        **res, "ci_lo": res["final_loss_ci95"][0], "ci_hi": res["final_loss_ci95"][1]})
    return out


def widths_table(rows: list[dict[str, Any]]) -> str:
    """Final loss per (depth, width) and optimizer, best per row in bold; `rows` from `width_rows`."""
    names = list(dict.fromkeys(r["optimizer"] for r in rows))
    lines = ["| layers | width | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for d in sorted({r["layers"] for r in rows}):
        for width in sorted({r["width"] for r in rows if r["layers"] == d}):
            cells = {r["optimizer"]: r["final_loss"] for r in rows if r["layers"] == d and r["width"] == width}
            best = min(cells.values())
            lines.append(f"| {d} | {width} | " + " | ".join(
                (f"**{cells[n]:.4g}**" if cells.get(n) == best else f"{cells[n]:.4g}") if n in cells else "-" for n in names) + " |")
    return "\n".join(lines) + "\n"


def widths_plot(path: Path, rows: list[dict[str, Any]]) -> None:
    """The paper's architecture-sweep plot: final loss vs hidden width, one panel per depth, one
    line per optimizer (95% CI bars); `rows` from `width_rows`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from l2o.evaluation.report import save_figure

    names = list(dict.fromkeys(r["optimizer"] for r in rows))
    depths = sorted({r["layers"] for r in rows})
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
    save_figure(fig, path)


def write_widths(sweep_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """The widths view of a sweep directory: sweep.{md,csv,png}."""
    rows = width_rows(rows)
    keys = ["job", "layers", "width", "optimizer", "final_loss", "ci_lo", "ci_hi", "sum_loss", "lr", "diverged"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(sweep_dir / "sweep.csv", buf.getvalue())
    md = sweep_dir / "sweep.md"
    atomic_write_text(md, "Final training loss (mean over test problems; best in bold)\n\n" + widths_table(rows))
    widths_plot(sweep_dir / "sweep.png", rows)
    return md


# Other presentations of a gathered sweep: name -> view(sweep_dir, rows in job order) -> its Markdown file.
VIEWS: dict[str, Callable[[Path, list[dict[str, Any]]], Path]] = {"widths": write_widths}


def _check_views(views: Sequence[str]) -> list[str]:
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"unknown sweep view(s) {', '.join(map(repr, unknown))}; available: {', '.join(VIEWS)}")
    return list(views)


def gather(sweep_dir: str | Path, metric: str | None = None, maximize: bool = False,
           views: Sequence[str] = ()) -> dict[str, Any]:
    """Write gathered.{csv,md,png} into `sweep_dir`, then each of `views`; returns the best job,
    with `views`: each view's Markdown file."""
    views = _check_views(views)
    sweep_dir = Path(sweep_dir)
    jobs = job_dirs(sweep_dir)
    rows = [r for r in (job_row(j) for j in jobs) if r is not None]
    if not rows:
        raise SystemExit(f"no finished l2o-train/l2o-eval jobs under {sweep_dir} (no */result.json or */summary.json).")
    kinds = {r["kind"] for r in rows}
    if len(kinds) > 1:
        raise SystemExit(f"{sweep_dir} mixes l2o-train and l2o-eval jobs; gather them separately.")
    metric = metric or default_metric(rows)
    skipped = [j.name for j in jobs if j.name not in {r["job"] for r in rows}]
    best = write(sweep_dir, rank(rows, metric, maximize), metric, skipped)
    return {**best, "views": {v: VIEWS[v](sweep_dir, rows) for v in views}}


class GatherCallback(Callback):
    """Hydra callback: gather the multirun when it ends (any launcher or sweeper)."""

    def __init__(self, metric: str | None = None, maximize: bool = False, views: Sequence[str] = ()) -> None:
        self.metric, self.maximize, self.views = metric, maximize, _check_views(views)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            best = gather(sweep_dir, self.metric, self.maximize, self.views)
        except SystemExit as exc:  # e.g. every job failed: say so, do not hide the jobs' own errors
            print(f"l2o: sweep not gathered: {exc}", file=sys.stderr)
            return
        print(f"l2o: sweep gathered into {sweep_dir}/gathered.md (.csv, .png); best job {best['job']}: "
              f"{best['metric']} = {_fmt(best['value'])}" + (f", checkpoint {best['checkpoint']}" if best["checkpoint"] else ""))
        for name, md in best["views"].items():
            print(f"l2o: view {name} written to {md} (.csv, .png):\n{md.read_text()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m l2o.sweeps", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun directory")
    parser.add_argument("--metric", help="column to rank by (default: best_val for l2o-train, the learned "
                                         "optimizer's final_loss/<name> for l2o-eval)")
    parser.add_argument("--maximize", action="store_true", help="higher is better")
    parser.add_argument("--view", dest="views", action="append", default=[], choices=sorted(VIEWS),
                        help="also write this view of the jobs (repeatable), e.g. widths: sweep.{md,csv,png}, "
                             "final loss vs hidden width per depth")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"{args.sweep_dir} is not a directory")
    best = gather(args.sweep_dir, args.metric, args.maximize, args.views)
    print((args.sweep_dir / "gathered.md").read_text())
    for md in best["views"].values():
        print(md.read_text())


if __name__ == "__main__":
    main()
