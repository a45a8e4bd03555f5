"""`l2o-study`: run the named studies of conf/study/ (a study: the units, i.e. the l2o-train and
l2o-eval runs, behind a results page) and write their pages.

    l2o-study list                         the studies, their units and an estimate of their CPU time
    l2o-study run NAME [size=cpu|paper]    run what is not done yet (finished units are skipped, stopped
                                           ones resumed); other key=value pass to every unit (threads=1,
                                           workers=2 for evaluations), hydra/launcher=... to Hydra
    l2o-study status NAME                  each unit done / partial / missing, with wall times
    l2o-study report NAME                  docs/results/NAME.md and its figures, from the runs alone

Options of every command: size=cpu|paper (default cpu), root=DIR (default outputs/study: run
directories are ROOT/SIZE/STUDY/UNIT), --config-dir DIR (a user's own studies in DIR/study/, and
their optimizees and optimizers); run and status also take units=PATTERN[,PATTERN] (glob patterns
of unit names, e.g. units='mnist/*': those units and the ones they need); report also takes out=DIR (default docs/results) and
readme=FILE (default README.md: its table between the study's markers is rewritten).

The record: `report` also copies every finished unit's small files (tables, curves, config, trained φ)
to records=DIR (default OUT/runs: docs/results/runs), to commit with the page, and every stopped unit's
work so far (what resume=true needs); run, status and report restore a unit whose run directory is
missing from it, so a fresh clone regenerates the page and continues the study where the record left
off, stopped units included. records=none ignores the record: everything runs again.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from l2o.cli.common import user_errors
from l2o.errors import L2OError
from l2o.study import records, report, runner
from l2o.study.spec import Resolver, Unit, available
from l2o.study.state import check_configs, compose_configs, state

OPTIONS = {"size": "cpu", "root": "outputs/study", "out": "docs/results", "readme": "README.md", "units": "",
           "records": "auto"}


def _records(opts: dict[str, str]) -> Path | None:
    """records=auto (the default): OUT/runs, beside the page; records=none: no record."""
    value = opts["records"]
    return None if value in ("", "none") else Path(opts["out"]) / "runs" if value == "auto" else Path(value)


def _restore(units: list[Unit], opts: dict[str, str], args: argparse.Namespace) -> None:
    """Units whose run directory is missing but which the study's record holds count as done."""
    if _records(opts) is not None:
        records.restore(units, _records(opts), tuple(args.config_dir))


def _only(opts: dict[str, str]) -> tuple[str, ...]:
    """units=mnist/*,quadratic/eval: glob patterns of unit names (run and status only)."""
    return tuple(p for p in opts["units"].split(",") if p)


def _minutes(units: list[Unit]) -> str:
    known = [u.minutes for u in units if u.minutes is not None]
    text = f"~{sum(known) / 60:.1f} h" if sum(known) >= 90 else f"~{sum(known):.0f} min"
    unknown = len(units) - len(known)
    return text + (f" (+{unknown} units without an estimate)" if unknown else "")


def cmd_list(args: argparse.Namespace, opts: dict[str, str]) -> int:
    resolver = Resolver(opts["size"], Path(opts["root"]), tuple(args.config_dir))
    for name, path in available(tuple(args.config_dir)).items():
        try:
            spec = resolver.study(name)
        except L2OError as exc:  # e.g. a study without this size
            print(f"{name}: {exc}")
            continue
        units = resolver.closure(name)
        own = {u.key for u in resolver.units(name)}
        print(f"{name} (version {spec.version}): {spec.description.splitlines()[0] if spec.description else ''}")
        estimate = _minutes(units) if opts["size"] == "cpu" else "measured at size cpu only"
        print(f"  {len(units)} units, CPU time at size {opts['size']} on 2 cores: {estimate}")
        for u in units:
            est = f"~{u.minutes:g} min" if u.minutes is not None else "?"
            origin = "" if u.key in own else f"  (from study {u.study})"
            print(f"    {u.name:<28} {u.cli:<5} {est:>10}{origin}")
    return 0


def _status_lines(units: list[Unit], config_dirs: tuple[str, ...]) -> list[str]:
    composed = compose_configs([u for u in units if state(u).status != "missing"], config_dirs)
    lines = [f"{'unit':<36} {'cli':<5} {'status':<8} {'wall time':>10} {'CPU time':>10} {'estimate':>9}  run dir"]
    for u in units:
        st = state(u)
        wall = f"{st.seconds / 60:.1f} min" if st.seconds else "–"
        cpu = f"{st.cpu_seconds / 60:.1f} min" if st.cpu_seconds is not None else "–"
        est = f"~{u.minutes:g} min" if u.minutes is not None else "?"
        status = st.status
        if u.key in composed:
            try:
                check_configs([u], composed)
            except L2OError:
                status += " (config or φ differs: refused)"
        lines.append(f"{u.label:<36} {u.cli:<5} {status:<8} {wall:>10} {cpu:>10} {est:>9}  {u.run_dir}")
    return lines


def cmd_status(args: argparse.Namespace, opts: dict[str, str]) -> int:
    resolver = Resolver(opts["size"], Path(opts["root"]), tuple(args.config_dir))
    units = resolver.closure(args.study, _only(opts))
    _restore(units, opts, args)
    print("\n".join(_status_lines(units, tuple(args.config_dir))))
    counts = {s: sum(state(u).status == s for u in units) for s in ("done", "running", "partial", "missing")}
    print(f"{args.study}: {counts['done']} done, {counts['running']} running, {counts['partial']} partial, "
          f"{counts['missing']} missing of {len(units)} units")
    return 0


def cmd_run(args: argparse.Namespace, opts: dict[str, str], passthrough: list[str], hydra_args: list[str]) -> int:
    root = Path(opts["root"])
    resolver = Resolver(opts["size"], root, tuple(args.config_dir))
    units = resolver.closure(args.study, _only(opts))
    _restore(units, opts, args)
    left = runner.run(units, root, passthrough, hydra_args, tuple(args.config_dir))
    if left:
        print(f"l2o-study: {len(left)} unit(s) not done: {', '.join(u.label for u in left)}; their logs are in their "
              f"run directories. `l2o-study status {args.study}` shows where each stands.", file=sys.stderr)
        return 1
    print(f"l2o-study: {args.study}: all {len(units)} units done. Next: l2o-study report {args.study}")
    return 0


def cmd_report(args: argparse.Namespace, opts: dict[str, str]) -> int:
    resolver = Resolver(opts["size"], Path(opts["root"]), tuple(args.config_dir))
    readme = Path(opts["readme"]) if opts["readme"] else None
    units = resolver.closure(args.study)
    _restore(units, opts, args)
    if _records(opts) is not None:
        done, stopped = records.keep(units, _records(opts))
        print(f"l2o-study: recorded {len(done)} finished unit(s)"
              + (f" and {len(stopped)} stopped one(s) ({', '.join(u.label for u in stopped)})" if stopped else "")
              + f" in {_records(opts) / opts['size']}/ (commit it with the page: a fresh clone regenerates the page "
              "and continues the study from it)")
    path = report.write(resolver, args.study, Path(opts["out"]), readme, _records(opts))
    print(f"l2o-study: wrote {path} (figures in {path.with_suffix('')}/)")
    return 0


@user_errors("l2o-study")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2o-study", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("command", choices=["list", "run", "status", "report"])
    parser.add_argument("study", nargs="?", help="the study's name (conf/study/NAME.yaml)")
    parser.add_argument("settings", nargs="*", help="key=value: size=, root=, out=, readme=; for run also unit "
                                                    "overrides (threads=1, workers=2) and hydra/launcher=...")
    parser.add_argument("--config-dir", action="append", default=[], help="a config folder with study/, optimizee/, ...")
    args = parser.parse_intermixed_args(argv)   # options may come between the settings
    if args.command != "list" and not args.study:
        parser.error(f"{args.command} needs the study's name, e.g. l2o-study {args.command} paper")
    if args.study and "=" in args.study:  # `l2o-study list size=paper`
        args.settings.insert(0, args.study)
        args.study = None
    opts, passthrough, hydra_args = dict(OPTIONS), [], []
    for item in args.settings:
        key, eq, value = item.partition("=")
        if not eq:
            raise L2OError(f"{item!r} is not key=value.")
        if key in OPTIONS:
            opts[key] = value
        elif key.startswith("hydra"):
            hydra_args.append(item)
        elif args.command == "run":
            passthrough.append(item)
        else:
            raise L2OError(f"{key}= is not a setting of l2o-study {args.command}; allowed: {', '.join(OPTIONS)}.")
    if opts["units"] and args.command not in ("run", "status"):
        raise L2OError(f"units= selects units to run or show; l2o-study {args.command} takes the whole study.")
    if args.command == "run":
        return cmd_run(args, opts, passthrough, hydra_args)
    return {"list": cmd_list, "status": cmd_status, "report": cmd_report}[args.command](args, opts)


def entry() -> None:
    try:
        sys.exit(main())
    except BrokenPipeError:   # `l2o-study status NAME | head`: the reader left; Python's documented way out
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    entry()
