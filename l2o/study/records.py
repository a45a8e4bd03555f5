"""A study's record: the small files of its finished units, kept next to the results page
(`docs/results/runs/<size>/<study>/<unit>/`, committed with it) so that the page can be regenerated,
and the study continued, on a machine that does not hold the run directories (a fresh clone, a
cluster's scratch that was wiped, a colleague's laptop).

`l2o-study report` records every finished unit; `run`, `status` and `report` first restore a unit
whose run directory is missing from its record, so a restored unit is done as if it had run here,
with its own machine, date and wall time (`unit.json`). A recorded training keeps its trained φ
(`checkpoints/best*.pt`, a few tens of kB) so the evaluations that need it can run; an evaluation
keeps its tables and curves, not its per-problem store (`partial/`), except one that another unit
names in `baselines_from=`: it keeps its baselines' part of the store (~0.8 MB per baseline for a
10,000-step evaluation, tens of kB for most), so that unit copies them on a fresh clone instead of
running the baselines again (every record keeps `partial/tuning.json`, which spares only their tuning). Curves are kept
gzipped (`curves.csv.gz`; a 10,000-step evaluation's curves.csv is ~5.5 MB, ~2 MB gzipped), so that
no file of a record is one a repository should not hold.

A stopped unit (killed part-way, no process running it) is recorded too, with what `resume=true`
needs: a training's `checkpoints/last.pt`, an evaluation's per-problem store so far, and its killed
session (as STOPPED, with the CPU time its marker held). Restored on another machine, it is partial
there and `run` continues it: a study whose units outlast one session on a machine that is not
kept (a cloud VM, a SLURM allocation's scratch) still gets done. Its finished record replaces it.
"""
from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path
from typing import Iterable

from l2o.study.record import append_session, stopped_session
from l2o.study.spec import Unit, override_key
from l2o.study.state import RESULT, changed_checkpoints, compose_configs, differences, has_work, state

KEPT = ("unit.json", "result.json", "summary.json", "summary.md", "curves.csv", "images.png",
        ".hydra/config.yaml", ".hydra/overrides.yaml", "partial/meta.json", "partial/tuning.json")
KEPT_GLOBS = ("checkpoints/best*.pt",)
RESUME = {"train": ("checkpoints/last.pt", "checkpoints/last.prev.pt"), "eval": ("partial/*/*.pt",)}   # a stopped unit's too
MAX_BYTES = 4 * 2**20   # a larger file is left out of the record (and said so): the record is committed
SO_FAR = ("curves.csv", "images.png")   # a stopped unit's plots so far: rewritten when it resumes, so not recorded
GZIPPED = (".csv",)     # kept as NAME.gz in the record, unpacked again when a run directory is restored


def record_dir(unit: Unit, records: Path) -> Path:
    return records / unit.size / unit.study / unit.name


def kept_files(run_dir: Path, globs: tuple[str, ...] = KEPT_GLOBS) -> list[Path]:
    files = [run_dir / f for f in KEPT if (run_dir / f).is_file()]
    return files + sorted({p for g in globs for p in run_dir.glob(g) if p.is_file()})


def baseline_sources(units: Iterable[Unit]) -> set[Path]:
    """The run directories of the evaluations that some unit names in `baselines_from=`."""
    return {Path(o.partition("=")[2]) for u in units for o in u.overrides if override_key(o) == "baselines_from"}


def baseline_stores(run_dir: Path) -> tuple[str, ...]:
    """Globs of an evaluation's per-problem store of its baselines (the optimizers it ran that have
    no checkpoint): what `baselines_from=` copies."""
    meta = json.loads((run_dir / "partial" / "meta.json").read_text())
    return tuple(f"partial/{name}/*.pt" for name in meta["optimizers"] if name not in meta.get("checkpoints", {}))


def is_stopped(record: Path, cli: str) -> bool:
    """A record of a stopped unit: work to resume, no result."""
    return not (record / RESULT[cli]).is_file() and has_work(record, cli)


def keep(units: Iterable[Unit], records: Path) -> tuple[list[Unit], list[Unit]]:
    """Copy each finished unit's kept files into its record (replacing an older record), and each
    stopped one's kept and resume files (never over a finished record); the units recorded,
    finished and stopped."""
    done, stopped = [], []
    units = list(units)
    sources = baseline_sources(units)
    for unit in units:
        status = state(unit).status
        target = record_dir(unit, records)
        if status == "partial" and not (target / RESULT[unit.cli]).is_file():
            files = [f for f in kept_files(unit.run_dir, KEPT_GLOBS + RESUME[unit.cli]) if f.name not in SO_FAR]
            stopped.append(unit)
        elif status == "done":
            stores = baseline_stores(unit.run_dir) if unit.run_dir in sources and has_work(unit.run_dir, "eval") else ()
            files = kept_files(unit.run_dir, KEPT_GLOBS + stores)
            done.append(unit)
        else:
            continue
        staging = target.with_name(target.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for src in files:
            dst = staging / src.relative_to(unit.run_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix in GZIPPED:
                dst = dst.with_name(dst.name + ".gz")
                with src.open("rb") as f, gzip.GzipFile(dst, "wb", mtime=0) as packed:   # mtime 0: same bytes, same record
                    shutil.copyfileobj(f, packed)
            else:
                shutil.copyfile(src, dst)
            if dst.stat().st_size > MAX_BYTES:
                print(f"l2o-study: {unit.label}: {dst.relative_to(staging)} ({dst.stat().st_size / 2**20:.0f} MB) "
                      "is too large for the record; left out", file=sys.stderr)
                dst.unlink()
        killed = stopped_session(unit.run_dir, unit.run_dir / ".hydra") if status == "partial" else None
        if killed is not None:   # the session its dead marker tells of (the marker itself stays out of the record)
            append_session(staging / "unit.json", killed)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return done, stopped


def restore(units: Iterable[Unit], records: Path, config_dirs: tuple[str, ...] = ()) -> list[Unit]:
    """Recreate each unit's missing run directory from its record (a stopped unit's too: it is
    partial here then); the units restored. A run directory that exists (holding anything: a stopped
    run, another config) is never touched, and a record made with another composed config than the
    unit's now is left where it is (and said so)."""
    import yaml

    candidates = [u for u in units if not u.run_dir.exists() and ((record_dir(u, records) / RESULT[u.cli]).is_file()
                                                                  or is_stopped(record_dir(u, records), u.cli))]
    composed = compose_configs(candidates, config_dirs) if candidates else {}
    out = []
    for unit in candidates:
        src = record_dir(unit, records)
        saved = src / ".hydra" / "config.yaml"
        diff = differences(yaml.safe_load(saved.read_text()) or {}, composed[unit.key]) if saved.is_file() else ["no config"]
        diff += changed_checkpoints(src, strict=True) if unit.cli == "eval" else []
        if diff:
            print(f"l2o-study: {unit.label}: its record in {src} was made with another config or φ ({'; '.join(diff[:3])}); "
                  "not restored, the unit runs again", file=sys.stderr)
            continue
        staging = unit.run_dir.with_name(unit.run_dir.name + ".restoring")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(src, staging)
        for packed in [p for p in staging.rglob("*.gz") if p.with_suffix("").suffix in GZIPPED]:
            with gzip.open(packed, "rb") as f, packed.with_suffix("").open("wb") as unpacked:
                shutil.copyfileobj(f, unpacked)
            packed.unlink()
        staging.rename(unit.run_dir)
        out.append(unit)
    if out:
        labels = [u.label + (" (stopped: it resumes)" if state(u).status == "partial" else "") for u in out]
        print(f"l2o-study: restored from the record in {records}: {', '.join(labels)}", file=sys.stderr)
    return out
