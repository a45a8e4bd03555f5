"""`l2o-study run`: what is not done yet, as Hydra multiruns.

Units run in waves: a wave holds every unit whose needs are done, one multirun per CLI (trainings
first), through the `l2o_units` sweeper and whatever launcher `hydra/launcher=` chooses (in
process, joblib on this machine, submitit on SLURM). Each unit runs in its own run directory with
`resume=true` when it holds a stopped run, so rerunning a study continues it and a finished one
does nothing. A unit that fails is reported; the units that need it wait for the next run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from l2o.errors import L2OError
from l2o.study.spec import Unit, passthrough_for
from l2o.study.state import check_configs, compose_configs, has_work, state

MODULES = {"train": "l2o.cli.train", "eval": "l2o.cli.eval"}
RECORD = "+hydra.callbacks.unit_record._target_=l2o.study.record.UnitRecord"


def pending(units: list[Unit]) -> list[Unit]:
    return [u for u in units if state(u).status != "done"]


def launch(wave: list[Unit], cli: str, root: Path, passthrough: list[str], hydra_args: list[str],
           config_dirs: tuple[str, ...]) -> int:
    """One multirun of `cli` over `wave`; its exit code."""
    jobs = [{"dir": str(u.run_dir.relative_to(root)),
             "overrides": [*u.overrides, f"resume={'true' if has_work(u.run_dir, u.cli) else 'false'}"]} for u in wave]
    (root / ".waves").mkdir(parents=True, exist_ok=True)
    # A unique name: two studies launched in the same second must not share (and so swap) their units.
    fd, name = tempfile.mkstemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{cli}-", suffix=".json",
                                dir=root / ".waves")
    with os.fdopen(fd, "w") as f:
        json.dump(jobs, f, indent=1)
    spec = Path(name)
    cmd = [sys.executable, "-m", MODULES[cli], "--multirun", *(f"--config-dir={d}" for d in config_dirs),
           "hydra/sweeper=l2o_units", f"hydra.sweeper.units={spec}", f"hydra.sweep.dir={root}",
           "~hydra.callbacks.gather", RECORD, *hydra_args, *passthrough_for(cli, passthrough)]
    return subprocess.call(cmd)


def run(units: list[Unit], root: Path, passthrough: list[str], hydra_args: list[str],
        config_dirs: tuple[str, ...] = ()) -> list[Unit]:
    """Run every unit of `units` (a closure: needs included) that is not done; the units left
    undone (failed, or waiting on one that failed)."""
    # With the command line's settings: one that changes a finished unit's config is refused, not ignored.
    check_configs(units, compose_configs([u for u in units if state(u).status != "missing"], config_dirs, passthrough))
    if not pending(units):
        return []
    failed: set[tuple[str, str]] = set()
    wave_no = 0
    busy = {u.label for u in units if state(u).status == "running"}
    if busy:
        print(f"l2o-study: left alone, another process is running them: {', '.join(sorted(busy))}", flush=True)
    while True:
        todo = [u for u in pending(units) if u.key not in failed and u.label not in busy]
        done = {u.key for u in units if state(u).status == "done"}
        ready = [u for u in todo if all(n in done for n in u.needs)]
        if not ready:
            break
        wave_no += 1
        for cli in ("train", "eval"):
            wave = [u for u in ready if u.cli == cli]
            if not wave:
                continue
            print(f"l2o-study: wave {wave_no}, {len(wave)} {cli} unit(s): {', '.join(u.label for u in wave)}", flush=True)
            code = launch(wave, cli, root, passthrough, hydra_args, config_dirs)
            if code >= 128 or code < 0:  # stopped by a signal: stop the study too
                raise L2OError(f"stopped (exit code {code}); rerun the same command to continue.")
            failed |= {u.key for u in wave if state(u).status != "done"}
    return [u for u in units if state(u).status != "done"]
