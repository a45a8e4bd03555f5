"""`l2o-study report NAME`: `docs/results/NAME.md` and its figures, from the units' run directories
only (`summary.json`, `curves.csv`, `result.json`, `unit.json`, `images.png`). Every number on the
page is read from a run; every table says which units made it, with their commands, the machine
and the date. The page's layout is the study's `report:` section:

    report:
      title: ...
      intro: ...                          # prose, no numbers
      headline:                           # the summary table (also the README's, between markers)
        - {figure: "Fig. 4, left", setting: "quadratics, step 100", unit: quadratic/eval, paper: "LSTM ≈ 0.04, ..."}
      sections:
        - title: ...
          panels: [{unit: mnist/eval, title: "100 steps"}, ...]   # loss curves side by side + one table
          steps: [20, 50]                 # loss columns besides the final step
          window: 1000                    # a column: mean loss over the last 1,000 steps
          log_loss: true                  # a column: mean log final loss
          paper: {mnist/eval: {lstm: "≈ 0.22", adam: "≈ 0.3"}}   # the paper's value per optimizer
          notes: ...                      # findings: a short paragraph, pointing to the units
        - title: ...
          sweep: {units: [...]}           # final loss vs hidden width per depth (the paper's Fig. 6)
        - title: ...
          training: [mnist/train, ...]    # epochs, best φ, validation, wall time
        - title: ...
          target: {learned: general, baseline: adam, metric: test_loss, ratio: 1.05, units: [...]}
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from l2o.errors import L2OError
from l2o.evaluation.report import EXTRA_COLUMNS, colors_for, draw_curves, read_curves_csv, save_figure
from l2o.study.record import describe_session
from l2o.study.spec import Resolver, Unit
from l2o.study.state import check_configs, compose_configs, state
from l2o.utils import atomic_write_text

START, END = "<!-- l2o-study report {}: start -->", "<!-- l2o-study report {}: end -->"


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class Page:
    """The units of one study (and those they reference) and what their run directories hold."""

    def __init__(self, resolver: Resolver, study: str):
        self.resolver, self.study = resolver, study
        self.spec = resolver.study(study)

    def unit(self, name: str) -> Unit:
        study, _, unit = name.rpartition(":")
        return self.resolver.unit(study or self.study, unit)

    def summary(self, unit: Unit) -> dict[str, Any] | None:
        path = unit.run_dir / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def provenance(self, units: list[Unit]) -> list[str]:
        """One line per unit: its name, command, machine, date and wall time."""
        lines = []
        for u in units:
            st = state(u)
            if st.status != "done":
                lines.append(f"- `{u.label}`: **{st.status}**, not run to the end yet (`l2o-study run {u.study}`); "
                             f"command `{u.command()}`")
                continue
            sessions = st.record.get("sessions", [])
            machines = list(dict.fromkeys(describe_session(s) for s in sessions if s.get("machine")))
            dates = sorted({s["started"][:10] for s in sessions if s.get("started")})
            when = (dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}") if dates else "date not recorded"
            secs = f", {_duration(st.seconds)}" if st.seconds else ""
            if st.seconds and st.cpu_seconds is not None:
                secs += f" ({_duration(st.cpu_seconds)} of CPU time)"
            lines.append(f"- `{u.label}`: `{u.command()}` ({'; '.join(machines) or 'machine not recorded'}; {when}{secs})")
        return lines


def _loss_at(bands: dict[str, tuple[list[float], list[float], list[float]]], name: str, step: int) -> float | None:
    mean = bands.get(name, ([], [], []))[0]
    return mean[step] if step < len(mean) else None


def _window(bands: dict[str, tuple[list[float], list[float], list[float]]], name: str, n: int) -> float | None:
    mean = [v for v in bands.get(name, ([], [], []))[0][-n:] if not math.isnan(v)]
    return sum(mean) / len(mean) if mean else None


def curves_section(page: Page, section: dict[str, Any], fig_dir: Path, rel: str) -> list[str]:
    """Loss curves of the panels' evaluations side by side, and one table of all their optimizers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(page.unit(p["unit"]), p.get("title", p["unit"])) for p in section["panels"]]
    steps = list(section.get("steps", []))
    window, log_loss = section.get("window"), bool(section.get("log_loss"))
    paper = {page.unit(k).key: v for k, v in (section.get("paper") or {}).items()}
    summaries = {u.key: page.summary(u) for u, _ in panels}
    extra = [k for k in EXTRA_COLUMNS if any(k in row for s in summaries.values() if s for row in s["optimizers"].values())]
    head = (["setting", "optimizer", "lr"] + [f"step {s:,}" for s in steps] + ["final loss (± 95% CI)"]
            + ([f"mean of last {window:,} steps"] if window else []) + (["mean log loss"] if log_loss else [])
            + ["diverged"] + [k.replace("_", " ") for k in extra] + (["paper"] if paper else []))
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), dpi=110, squeeze=False)
    names = [n for s in summaries.values() if s for n in s["optimizers"]]
    colors = colors_for(names, {n: r.get("lr") for s in summaries.values() if s for n, r in s["optimizers"].items()})
    galleries = []
    for ax, (unit, title) in zip(axes[0], panels):
        summary = summaries[unit.key]
        if summary is None:
            ax.set_title(f"{title}: not run yet")
            table.append(f"| {title} | not run yet (`{unit.label}`) |" + " |" * (len(head) - 2))
            continue
        opts = summary["optimizers"]
        lrs = {n: r.get("lr") for n, r in opts.items()}
        bands = read_curves_csv(unit.run_dir / "curves.csv")
        draw_curves(ax, bands, lrs, {n: r["diverged"] for n, r in opts.items()}, colors=colors)
        ax.set_title(f"{title}\n{summary['num_problems']} test problems, {summary['steps']:,} steps", fontsize=10)
        finite = [r["final_loss"] for r in opts.values() if not math.isnan(r["final_loss"])]
        best = min(finite) if finite else None
        for name, row in sorted(opts.items(), key=lambda kv: (math.isnan(kv[1]["final_loss"]), kv[1]["final_loss"])):
            lo, hi = row["final_loss_ci95"]
            final = f"{_fmt(row['final_loss'])} ± {_fmt((hi - lo) / 2, 2)}"
            if row["final_loss"] == best:
                final = f"**{final}**"
            cells = [title, f"**{name}**" if row.get("lr") is None else name,
                     "learned" if row.get("lr") is None else _fmt(row["lr"], 3)]
            cells += [_fmt(_loss_at(bands, name, s)) for s in steps] + [final]
            cells += [_fmt(_window(bands, name, window))] if window else []
            cells += [_fmt(row.get("final_log_loss"), 3)] if log_loss else []
            cells += [f"{100 * row['diverged']:.0f}%"] + [_fmt(row.get(k), 3 if k in ("step_ms", "state_bytes_per_param") else 4)
                                                           for k in extra]
            cells += [paper.get(unit.key, {}).get(name, "")] if paper else []
            table.append("| " + " | ".join(cells) + " |")
        if (unit.run_dir / "images.png").is_file():
            name = f"{_slug(unit.name)}-images.png"
            shutil.copyfile(unit.run_dir / "images.png", fig_dir / name)
            galleries.append(f"![{title}: every optimizer's image]({rel}/{name})")
    figure = f"{_slug(section['title'])}.png"
    lines = []
    if any(summaries.values()):   # no figure of empty axes while nothing has run
        save_figure(fig, fig_dir / figure)
        lines = [f"![{section['title']}]({rel}/{figure})", ""]
    plt.close(fig)
    described = {title: summaries[unit.key]["optimizee_description"] for unit, title in panels
                 if (summaries[unit.key] or {}).get("optimizee_description")}
    lines += [*table, ""]
    if len(set(described.values())) == 1:
        lines += [f"Optimizee: {next(iter(described.values()))}.", ""]
    elif described:   # one per setting, named as its rows are
        lines += ["Optimizees:", "", *(f"- {title}: {text}" for title, text in described.items()), ""]
    return lines + galleries + ([""] if galleries else []) + page.provenance([u for u, _ in panels])


def sweep_section(page: Page, section: dict[str, Any], fig_dir: Path, rel: str) -> list[str]:
    """The paper's architecture sweep: final loss against hidden width, a panel per depth."""
    from l2o.sweeps import width_rows, widths_plot, widths_table

    units = [page.unit(name) for name in section["sweep"]["units"]]
    rows = []
    for u in units:
        summary = page.summary(u)
        if summary is not None:
            import yaml

            config = yaml.safe_load((u.run_dir / ".hydra" / "config.yaml").read_text())
            rows.append({"job": u.name, "config": config, "optimizers": summary["optimizers"]})
    lines = []
    if rows:
        width = width_rows(rows)
        figure = f"{_slug(section['title'])}.png"
        widths_plot(fig_dir / figure, width)
        lines += [f"![{section['title']}]({rel}/{figure})", "", "Final training loss, mean over the test problems "
                  "(best per row in bold):", "", widths_table(width)]
    missing = len(units) - len(rows)
    if missing:
        lines += [f"{missing} of the {len(units)} evaluations are not run yet.", ""]
    return lines + page.provenance(units)


def _against(summary: dict[str, Any] | None, learned: str, baseline: str, metric: str,
             ratio: float) -> tuple[float, float, float, bool, bool] | None:
    """A learned optimizer's metric, the baseline's, their ratio, whether it is within `ratio` (and
    did not diverge) and whether it is below; None when the unit has not run one of the two."""
    if summary is None or learned not in summary["optimizers"] or baseline not in summary["optimizers"]:
        return None
    ours, theirs = summary["optimizers"][learned], summary["optimizers"][baseline]
    a, b = ours.get(metric, math.nan), theirs.get(metric, math.nan)
    r = a / b if b and not (math.isnan(a) or math.isnan(b)) else math.nan
    return a, b, r, (not math.isnan(r)) and r <= ratio and not ours["diverged"], (not math.isnan(r)) and a < b


def target_section(page: Page, section: dict[str, Any]) -> list[str]:
    """A learned optimizer against one tuned baseline on one metric, per unit, with the ratio a
    target is stated in (`target: {learned: general, baseline: adam, metric: test_loss, ratio: 1.05,
    units: [...]}`), and how many units meet it. With several learned optimizers (`learned: [a, b]`)
    one table puts them side by side, with their step time and state per parameter."""
    t = section["target"]
    if not isinstance(t["learned"], str):
        return _comparison(page, t)
    learned, baseline, metric, ratio = t["learned"], t["baseline"], t.get("metric", "final_loss"), float(t.get("ratio", 1.0))
    label = metric.replace("_", " ")
    table = [f"| unit | {learned}: {label} | {baseline}: {label} (lr) | ratio | ≤ {ratio:g}× {baseline}? | below {baseline}? "
             f"| {learned} diverged |", "|---|---|---|---|---|---|---|"]
    units = [page.unit(name) for name in t["units"]]
    within = below = done = 0
    for u in units:
        summary = page.summary(u)
        found = _against(summary, learned, baseline, metric, ratio)
        if found is None:
            table.append(f"| `{u.label}` | not run yet | | | | | |")
            continue
        a, b, r, ok, lower = found
        done, within, below = done + 1, within + ok, below + lower
        table.append(f"| `{u.label}` | {_fmt(a)} | {_fmt(b)} ({_fmt(summary['optimizers'][baseline].get('lr'), 3)}) | "
                     f"{_fmt(r, 3)} | {'yes' if ok else 'no'} | {'yes' if lower else 'no'} | "
                     f"{100 * summary['optimizers'][learned]['diverged']:.0f}% |")
    return [*table, "", f"{learned}: within {ratio:g}× {baseline}'s {label} on {within} of {done} units run, below it on "
            f"{below} ({len(units) - done} not run yet).", ""]


def _comparison(page: Page, t: dict[str, Any]) -> list[str]:
    """Several learned optimizers against one baseline: per unit each one's ratio to the baseline's
    metric (a diverged run marked), then per optimizer how many units it is within `ratio` / below,
    and its step time (as a multiple of the baseline's in the same run) and state per parameter."""
    learned, baseline, metric, ratio = list(t["learned"]), t["baseline"], t.get("metric", "final_loss"), float(t.get("ratio", 1.0))
    label = metric.replace("_", " ")
    table = [f"| unit | {baseline}: {label} (lr) | " + " | ".join(f"{n}: ratio ({label})" for n in learned) + " |",
             "|---|---|" + "---|" * len(learned)]
    within, below, step_x, state = ({n: [] for n in learned} for _ in range(4))
    for u in (page.unit(name) for name in t["units"]):
        summary = page.summary(u)
        cells, theirs = [], (summary or {}).get("optimizers", {}).get(baseline)
        for n in learned:
            found = _against(summary, n, baseline, metric, ratio)
            if found is None:
                cells.append("not run yet")
                continue
            a, _, r, ok, lower = found
            ours = summary["optimizers"][n]
            within[n].append(ok)
            below[n].append(lower)
            if ours.get("step_ms") and theirs.get("step_ms"):
                step_x[n].append(ours["step_ms"] / theirs["step_ms"])
            if "state_bytes_per_param" in ours:
                state[n].append(ours["state_bytes_per_param"])
            mark = "**" if lower else ""
            cells.append(f"{mark}{_fmt(r, 3)}{mark} ({_fmt(a)})" + (f", {100 * ours['diverged']:.0f}% diverged" if ours["diverged"] else ""))
        base = f"{_fmt(theirs.get(metric))} ({_fmt(theirs.get('lr'), 3)})" if theirs else "not run yet"
        table.append(f"| `{u.label}` | {base} | " + " | ".join(cells) + " |")

    def span(values: list[float], unit: str) -> str:
        return "–" if not values else f"{_fmt(min(values), 3)}{unit}" if _fmt(min(values), 3) == _fmt(max(values), 3) \
            else f"{_fmt(min(values), 3)}-{_fmt(max(values), 3)}{unit}"

    table += [f"| ≤ {ratio:g}× / below {baseline} | | " + " | ".join(f"{sum(within[n])} / {sum(below[n])} of {len(within[n])}"
                                                              for n in learned) + " |",
              f"| step time ÷ {baseline}'s | | " + " | ".join(span(step_x[n], "×") for n in learned) + " |",
              "| state, bytes per parameter | | " + " | ".join(span(state[n], "") for n in learned) + " |"]
    return [*table, "", f"Ratio: the optimizer's {label} ÷ tuned {baseline}'s in the same unit (bold: below it). "
            f"Step time: the median `optimizer.step()` time as a multiple of {baseline}'s, lowest to highest over the units.", ""]


def training_section(page: Page, section: dict[str, Any]) -> list[str]:
    units = [page.unit(name) for name in section["training"]]
    table = ["| unit | epochs | best φ (epoch) | best validation loss | wall time |", "|---|---|---|---|---|"]
    for u in units:
        path = u.run_dir / "result.json"
        if not path.is_file():
            table.append(f"| `{u.label}` | not run yet | | | |")
            continue
        r = json.loads(path.read_text())
        secs = state(u).seconds
        wall = _duration(secs) if secs else "–"
        table.append(f"| `{u.label}` | {r['epochs_run']:,} | {r['best_epoch'] + 1:,} | {_fmt(r['best_val'])} | {wall} |")
    return [*table, "", *page.provenance(units)]


def _sweep_cell(page: Page, names: list[str]) -> tuple[str, str]:
    """A headline row over several evaluations (the architecture sweep): in how many the learned
    optimizer is below every tuned baseline."""
    summaries = [page.summary(page.unit(n)) for n in names]
    done = [s for s in summaries if s is not None]
    if not done:
        return "not run yet", ""
    wins = sum(all(r["final_loss"] < b["final_loss"] for r in s["optimizers"].values() if r.get("lr") is None
                   for b in s["optimizers"].values() if b.get("lr") is not None) for s in done)
    return f"below every tuned baseline in {wins} of {len(done)} shapes", f"{wins} of {len(done)}"


def headline_table(page: Page) -> list[str]:
    """Per paper figure: the paper's value, ours (learned against the best tuned baseline at the
    final step), and the unit that made it. A study with no paper values (every `paper: "–"`)
    gets no paper columns."""
    rows = page.spec.report.get("headline") or []
    with_paper = any(str(row.get("paper", "–")).strip() not in ("", "–") for row in rows)
    head = ["paper figure", "setting", "steps", "paper (read from its plot)", "ours: learned", "ours: best tuned baseline",
            "learned below every baseline?", "unit"]
    cells_of_rows = []
    for row in rows:
        if "units" in row:
            text, verdict = _sweep_cell(page, row["units"])
            cells_of_rows.append([row["figure"], row["setting"], "", row["paper"], text, "", verdict,
                                  f"`{page.unit(row['units'][0]).study}:{row['units'][0].rsplit('/', 1)[0]}/*`"])
            continue
        unit = page.unit(row["unit"])
        summary = page.summary(unit)
        if summary is None:
            cells_of_rows.append([row["figure"], row["setting"], "", row["paper"], "not run yet", "", "", f"`{unit.label}`"])
            continue
        opts = summary["optimizers"]
        learned = [n for n, r in opts.items() if r.get("lr") is None and n in row.get("learned", [n])]
        baselines = {n: r for n, r in opts.items() if r.get("lr") is not None}
        best = min(baselines, key=lambda n: baselines[n]["final_loss"]) if baselines else None

        def cell(name: str) -> str:
            r = opts[name]
            if math.isnan(r["final_loss"]):
                return f"{name} diverged ({100 * r['diverged']:.0f}% of runs)"
            return f"{name} {_fmt(r['final_loss'], 3)} ± {_fmt((r['final_loss_ci95'][1] - r['final_loss_ci95'][0]) / 2, 2)}"

        below = [n for n in learned if best is not None and opts[n]["final_loss"] < baselines[best]["final_loss"]]
        verdict = ", ".join(f"{n}: {'yes' if n in below else 'no'}" for n in learned)
        cells_of_rows.append([row["figure"], row["setting"], f"{summary['steps']:,}", row["paper"],
                              "; ".join(cell(n) for n in learned), cell(best) if best else "–", verdict, f"`{unit.label}`"])
    keep = [i for i in range(len(head)) if with_paper or i not in (0, 3)]
    return ["| " + " | ".join(head[i] for i in keep) + " |", "|" + "---|" * len(keep)] + [
        "| " + " | ".join(str(cells[i]) for i in keep) + " |" for cells in cells_of_rows]


def write(resolver: Resolver, study: str, out_dir: Path, readme: Path | None = None,
          records: Path | None = None) -> Path:
    """The page; `records`: where the units' record is (l2o.study.records), to link to it."""
    page = Page(resolver, study)
    report = page.spec.report
    if not report:
        raise L2OError(f"study {study!r} has no report: section ({page.spec.path}).")
    fig_dir = out_dir / study
    if fig_dir.exists():
        shutil.rmtree(fig_dir)  # figures of units since removed do not linger
    fig_dir.mkdir(parents=True)
    units = resolver.closure(study)
    check_configs(units, compose_configs([u for u in units if state(u).status != "missing"], resolver.config_dirs))
    done = sum(state(u).status == "done" for u in units)
    kept = os.path.relpath(records / resolver.size / study, out_dir) if records is not None else None
    lines = [f"# {report.get('title', study)}", "",
             f"Generated by `l2o-study report {study}` on {datetime.now().date().isoformat()} from the run directories "
             f"of `l2o-study run {study}{'' if resolver.size == 'cpu' else ' size=' + resolver.size}` "
             f"({done} of {len(units)} units done; size {resolver.size}). Do not edit by hand: every number below is "
             "read from a run, and the units under each table are the commands that made it."
             + (f" The runs' own files are kept in [{kept}]({kept})." if kept else ""), ""]
    if report.get("intro"):
        lines += [report["intro"].strip(), ""]
    if report.get("headline"):
        lines += ["## Summary", "", *headline_table(page), ""]
    for section in report.get("sections", []):
        lines += [f"## {section['title']}", ""]
        if section.get("text"):
            lines += [section["text"].strip(), ""]
        if "panels" in section:
            lines += curves_section(page, section, fig_dir, study)
        elif "sweep" in section:
            lines += sweep_section(page, section, fig_dir, study)
        elif "target" in section:
            lines += target_section(page, section)
        elif "training" in section:
            lines += training_section(page, section)
        lines.append("")
        if section.get("notes"):
            lines += [section["notes"].strip(), ""]
    path = out_dir / f"{study}.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    if readme is not None and readme.is_file() and report.get("headline"):
        _rewrite_readme(readme, study, headline_table(page), os.path.relpath(path, readme.parent))
    return path


def _rewrite_readme(readme: Path, study: str, table: list[str], link: str) -> None:
    """Replace what stands between the study's markers in the README (if it has them)."""
    text = readme.read_text()
    start, end = START.format(study), END.format(study)
    if start not in text or end not in text:
        return
    body = "\n".join([*table, "", f"Generated by `l2o-study report {study}`; every figure and table: [{link}]({link})."])
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(readme, f"{head}{start}\n{body}\n{end}{tail}")
