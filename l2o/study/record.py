"""What a results page says about how a number was made: each session of a unit, with its wall time,
CPU time, the machine (CPU model, cores, GPU) and the date, kept in `<run dir>/unit.json` by a Hydra
callback that `l2o-study run` adds to every job. Wall time alone misleads when units share the
cores (two units on 2 cores take twice as long each); CPU time is what the study's estimates are."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from l2o.utils import atomic_write_text


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__}


def describe(m: dict[str, Any]) -> str:
    """`AMD EPYC, 2 cores, no GPU`."""
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, " + (f"GPU {m['gpu']}" if m.get("gpu") else "no GPU")


def describe_session(s: dict[str, Any]) -> str:
    """`AMD EPYC, 2 cores, no GPU; 1 thread, 2 jobs at once`."""
    text = describe(s.get("machine") or {})
    if s.get("threads"):
        text += f"; {s['threads']} thread{'s' if s['threads'] != 1 else ''}"
        if (s.get("jobs_at_once") or 1) > 1:
            text += f", {s['jobs_at_once']} jobs at once"
    return text


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


RUNNING = "running.json"   # in a unit's run directory while a job runs it: {pid, host, started, cpu_seconds, ...}
HEARTBEAT_SECONDS = 60.0   # how often the marker's cpu_seconds is brought up to date while a job runs


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its children that have ended (where the
    platform reports them: not on Windows)."""
    try:
        import resource
    except ImportError:
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class UnitRecord(Callback):
    """Appends one session per job to unit.json (wall_seconds, cpu_seconds: their sums, across resumed
    sessions), and marks the run directory as running meanwhile. A session that was killed (its
    marker left behind by a dead process) is recorded when the unit next starts, as STOPPED, lasting
    until the last file it wrote, with the CPU time its marker last recorded (the marker is rewritten
    every HEARTBEAT_SECONDS): long units are stopped and resumed, and their time must not vanish."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        import torch

        self._start, self._cpu_start = time.perf_counter(), cpu_seconds()
        out = Path(config.hydra.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        subdir = config.hydra.output_subdir   # Hydra rewrote its config files there just now
        stopped = stopped_session(out, out / subdir if subdir else None)
        if stopped is not None:
            append_session(out / "unit.json", stopped)
        launcher = config.hydra.launcher
        self._session = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                         "commit": git_commit(),
                         "threads": config.get("threads") or torch.get_num_threads(),   # the job sets threads= after this
                         "jobs_at_once": launcher.get("n_jobs") or launcher.get("array_parallelism") or 1,
                         "launcher": str(launcher.get("_target_", "")).rsplit(".", 1)[-1]}
        self._marker = {"pid": os.getpid(), "host": platform.node(), **self._session}
        self._write_marker(out)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(out,), daemon=True, name="l2o-unit-record")
        self._beat.start()

    def _cpu(self) -> float:
        return round(cpu_seconds() - self._cpu_start, 3)

    def _write_marker(self, out: Path) -> None:
        atomic_write_text(out / RUNNING, json.dumps({**self._marker, "cpu_seconds": self._cpu()}))

    def _heartbeat(self, out: Path) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._write_marker(out)
            except OSError:   # a full disk must not kill the job; the session's end still records its time
                pass

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        out = Path(config.hydra.runtime.output_dir)
        self._stop.set()
        self._beat.join()
        append_session(out / "unit.json", {**self._session, "seconds": round(time.perf_counter() - self._start, 3),
                                           "cpu_seconds": self._cpu(), "status": job_return.status.name})
        (out / RUNNING).unlink(missing_ok=True)


def append_session(path: Path, session: dict[str, Any]) -> None:
    record = json.loads(path.read_text()) if path.is_file() else {"sessions": []}
    record["sessions"].append(session)
    record["wall_seconds"] = round(sum(s["seconds"] for s in record["sessions"]), 3)
    cpu = [s.get("cpu_seconds") for s in record["sessions"]]
    if None in cpu:   # a session recorded before CPU time was: the sum would be too low
        record.pop("cpu_seconds", None)
    else:
        record["cpu_seconds"] = round(sum(cpu), 3)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def stopped_session(run_dir: Path, skip: Path | None = None) -> dict[str, Any] | None:
    """The session a dead process left its marker for: from its start to the last file written in
    the run directory (outside `skip`). None when there is no such marker (or it has no start time)."""
    marker_path = run_dir / RUNNING
    try:
        marker = json.loads(marker_path.read_text())
        started = datetime.fromisoformat(marker["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if running(run_dir):
        return None
    files = (p for p in run_dir.rglob("*") if p.is_file() and p != marker_path and (skip is None or skip not in p.parents))
    last = max((p.stat().st_mtime for p in files), default=None)
    if last is None or last <= started.timestamp():
        return None
    keep = {k: v for k, v in marker.items() if k not in ("pid", "host", "started")}
    return {"started": marker["started"], "seconds": round(last - started.timestamp(), 3), **keep, "status": "STOPPED"}


def running(run_dir: Path) -> bool:
    """Whether a live process on this machine is running the unit in `run_dir` now."""
    try:
        marker = json.loads((run_dir / RUNNING).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("host") != platform.node():
        return True   # another machine's job (SLURM): trust the marker
    try:
        os.kill(int(marker["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return False
    return True
