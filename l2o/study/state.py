"""Where each unit stands, read from its run directory alone: done (its result file exists),
partial (work saved, no result: a stopped run that `resume=true` continues) or missing; and
whether the work in a run directory was made with the unit's composed config."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from l2o.errors import L2OError
from l2o.study.record import running
from l2o.study.spec import Unit, passthrough_for, plain

RESULT = {"train": "result.json", "eval": "summary.json"}   # written last: their presence means "done"
# How a run is executed, not what it computes: never a reason to refuse a run directory.
RUN_SETTINGS = frozenset({"progress", "workers", "threads", "resume"})


@dataclass
class State:
    status: str                  # done | running | partial | missing
    seconds: float | None        # wall time of the unit's sessions so far (unit.json, else result.json)
    record: dict[str, Any]       # unit.json: sessions, each with its machine and date

    @property
    def cpu_seconds(self) -> float | None:
        """CPU time of the unit's sessions so far; None when one of them was recorded without it."""
        return self.record.get("cpu_seconds")


def has_work(d: Path, cli: str) -> bool:
    """Whether `d` (a run directory, or a unit's record) holds work that `resume=true` continues."""
    if cli == "train":
        return (d / "checkpoints" / "last.pt").exists() or (d / "checkpoints" / "last.prev.pt").exists()
    return (d / "partial" / "meta.json").exists()


def state(unit: Unit) -> State:
    d = unit.run_dir
    record = json.loads((d / "unit.json").read_text()) if (d / "unit.json").is_file() else {}
    seconds = record.get("wall_seconds")
    if (d / RESULT[unit.cli]).is_file():
        if unit.cli == "train":   # the trainer's own clock, kept across resumes: sessions killed before they were recorded count too
            trained = json.loads((d / "result.json").read_text()).get("train_seconds")
            seconds = max((s for s in (seconds, trained) if s is not None), default=None)
        return State("done", seconds, record)
    if running(d):
        return State("running", seconds, record)
    return State("partial" if has_work(d, unit.cli) else "missing", seconds, record)


def compose_configs(units: Iterable[Unit], config_dirs: tuple[str, ...] = (),
                    passthrough: Iterable[str] = ()) -> dict[tuple[str, str], dict[str, Any]]:
    """Each unit's composed config, as its CLI would compose it (Hydra's compose API), with the
    settings `l2o-study run` passes to every unit."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from l2o.cli.common import CONF_DIR

    search = [f"hydra.searchpath=[{','.join('file://' + str(Path(d).resolve()) for d in config_dirs)}]"] if config_dirs else []
    out = {}
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        for unit in units:
            try:
                overrides = [*unit.overrides, *passthrough_for(unit.cli, passthrough), *search]
                out[unit.key] = plain(compose({"train": "train", "eval": "eval"}[unit.cli], overrides))
            except HydraException as exc:
                raise L2OError(f"unit {unit.label}: its overrides do not compose ({str(exc).splitlines()[0]}); "
                               f"command: {unit.command()}") from exc
    return out


def differences(saved: dict[str, Any], composed: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: saved -> composed` for every leaf that differs, run settings left out. A key the saved
    config lacks and the composed one sets to null is no difference: an option added since that
    run defaults to null exactly when null keeps the old behaviour (it is off), so runs made
    before it existed stay reusable."""
    out = []
    for key in sorted(set(saved) | set(composed), key=str):
        if not prefix and key in RUN_SETTINGS:
            continue
        a, b = saved.get(key, "<absent>"), composed.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b and not (a == "<absent>" and b is None):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def changed_checkpoints(run_dir: Path, strict: bool = False) -> list[str]:
    """`NAME: φ in PATH changed (a -> b)` for each learned optimizer an evaluation in `run_dir`
    recorded whose checkpoint now holds another φ (it was trained again): the same overrides, so
    the same composed config, but not the same results. Evaluations that recorded no fingerprints
    (older ones) are not judged; nor, unless `strict` (restoring a record), are checkpoints that
    are not there."""
    try:
        meta = json.loads((run_dir / "partial" / "meta.json").read_text())
    except (OSError, ValueError):
        return []
    out = []
    for name, saved in (meta.get("fingerprints") or {}).items():
        path = (meta.get("checkpoints") or {}).get(name)
        now = _fingerprint(path) if path else None
        if now is not None and now != saved:
            out.append(f"{name}: φ in {path} changed ({saved} -> {now})")
        elif now is None and strict:
            out.append(f"{name}: no checkpoint in {path} to compare its φ with")
    return out


def _fingerprint(path: str) -> str | None:
    from l2o.optimizers.files import resolve_checkpoint_path

    try:
        file = resolve_checkpoint_path(path)
        return _cached_fingerprint(str(file), file.stat().st_mtime_ns)
    except (L2OError, OSError):
        return None


@functools.lru_cache(maxsize=64)
def _cached_fingerprint(file: str, mtime_ns: int) -> str:
    from l2o.optimizers.files import fingerprint, load_checkpoint, net_from_checkpoint

    return fingerprint(net_from_checkpoint(load_checkpoint(file)))


def check_configs(units: Iterable[Unit], composed: dict[tuple[str, str], dict[str, Any]]) -> None:
    """A run directory that holds work (a result or a resumable part) made with another composed
    config, or an evaluation of a φ that has since been trained again, is never reused: an error
    naming each such unit and the keys (or optimizers) that differ."""
    import yaml

    problems = []
    for unit in units:
        saved_path = unit.run_dir / ".hydra" / "config.yaml"
        if not saved_path.is_file() or state(unit).status == "missing":
            continue
        diff = differences(yaml.safe_load(saved_path.read_text()) or {}, composed[unit.key])
        diff += changed_checkpoints(unit.run_dir) if unit.cli == "eval" else []
        if diff:
            shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
            problems.append(f"{unit.label} ({unit.run_dir}): {shown}")
    if problems:
        raise L2OError("these units' run directories hold results made with a different config or φ (saved -> now), "
                       "so they are not reused:\n  " + "\n  ".join(problems)
                       + "\nRestore the unit's settings, or move the run directory away to run the unit again.")
