"""What a results page says about how a number was made: each session of a unit, with its wall time,
the machine (CPU model, cores, GPU) and the date, kept in `<run dir>/unit.json` by a Hydra
callback that `l2o-study run` adds to every job."""
from __future__ import annotations

import json
import os
import platform
import subprocess
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


RUNNING = "running.json"   # in a unit's run directory while a job runs it: {pid, host, started}


class UnitRecord(Callback):
    """Appends one session per job to unit.json (wall_seconds: their sum, across resumed sessions),
    and marks the run directory as running meanwhile."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()
        self._date = datetime.now(timezone.utc).isoformat(timespec="seconds")
        out = Path(config.hydra.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RUNNING, json.dumps({"pid": os.getpid(), "host": platform.node(), "started": self._date}))

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        path = Path(config.hydra.runtime.output_dir) / "unit.json"
        record = json.loads(path.read_text()) if path.is_file() else {"sessions": []}
        import torch

        launcher = config.hydra.launcher
        jobs = launcher.get("n_jobs") or launcher.get("array_parallelism") or 1
        record["sessions"].append({"started": self._date, "seconds": round(time.perf_counter() - self._start, 3),
                                   "status": job_return.status.name, "machine": machine(), "commit": git_commit(),
                                   "threads": torch.get_num_threads(), "jobs_at_once": jobs,
                                   "launcher": str(launcher.get("_target_", "")).rsplit(".", 1)[-1]})
        record["wall_seconds"] = round(sum(s["seconds"] for s in record["sessions"]), 3)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        (path.parent / RUNNING).unlink(missing_ok=True)


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
