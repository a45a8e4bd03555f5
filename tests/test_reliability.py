"""Interrupt, kill, corrupt and poison a run; it must resume bit for bit or stop clearly."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import FAULTY, PLUGINS_ENV, SHARED_DATA, run_cli

TRAIN = ("schedule.epochs=120", "schedule.problems_per_epoch=8", "schedule.horizon=20", "schedule.unroll=5",
         "schedule.val_every=40", "schedule.num_val=4", "checkpoint_every=2", "progress=false")


def _phi(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["optimizer_state"]


def _scalars(run: Path, tag: str = "meta/loss") -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    run_cli("l2o-train", *TRAIN, f"hydra.run.dir={root / 'run'}", cwd=root)
    return root / "run"


def _start(run: Path, cwd: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("l2o-train")
    env = dict(os.environ, L2O_DATA_DIR=str(SHARED_DATA))
    return subprocess.Popen([str(exe), *TRAIN, f"hydra.run.dir={run}"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, path: Path, seconds: float = 120) -> None:
    """Until `path` exists: failing if the run ends first or the deadline passes."""
    deadline = time.time() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} did not appear within {seconds} s"
        time.sleep(0.02)


def _wait_for_checkpoint(proc: subprocess.Popen, run: Path) -> None:
    _wait_for(proc, run / "checkpoints" / "last.pt")


def _assert_same_as_reference(run: Path, reference: Path) -> None:
    for (k, a), b in zip(_phi(run).items(), _phi(reference).values()):
        assert torch.equal(a, b), k
    assert _scalars(run) == _scalars(reference)  # no duplicated or missing steps, same values
    assert [s for s, _ in _scalars(run, "val/final_loss")] == [39, 79, 119]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM,
                                 pytest.param(signal.SIGINT, marks=pytest.mark.slow)])  # SIGINT: SIGTERM's handler
def test_interrupted_run_resumes_bit_for_bit(tmp_path, reference, sig):
    run = tmp_path / "run"
    proc = _start(run, tmp_path)
    _wait_for_checkpoint(proc, run)
    time.sleep(random.uniform(0.0, 0.8))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 128 + sig), err
    if sig != signal.SIGKILL:
        assert "resume=true" in err
    done = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["training"]["progress"]["epoch"]
    assert done < 120, "the run finished before it was interrupted: the test proved nothing"
    run_cli("l2o-train", *TRAIN, f"hydra.run.dir={run}", "resume=true", cwd=tmp_path)
    _assert_same_as_reference(run, reference)


def test_truncated_last_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    run = tmp_path / "run"
    proc = _start(run, tmp_path)
    _wait_for_checkpoint(proc, run)
    _wait_for(proc, run / "checkpoints" / "last.prev.pt")
    proc.kill()
    proc.communicate()
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # a disk that lost the tail of the file
    proc = run_cli("l2o-train", *TRAIN, f"hydra.run.dir={run}", "resume=true", cwd=tmp_path)
    assert "previous checkpoint" in proc.stderr
    _assert_same_as_reference(run, reference)


def test_rerun_without_resume_refuses_to_overwrite(tmp_path, reference):
    err = run_cli("l2o-train", *TRAIN, f"hydra.run.dir={reference}", cwd=tmp_path, check=False)
    assert err.returncode == 2 and "resume=true" in err.stderr


def test_resume_with_a_different_config_says_what_differs(tmp_path, reference):
    err = run_cli("l2o-train", *TRAIN, "schedule.meta_lr=0.05", f"hydra.run.dir={reference}", "resume=true",
                  cwd=tmp_path, check=False)
    assert err.returncode == 2 and "schedule.meta_lr: 0.003 -> 0.05" in err.stderr


def test_nan_steps_are_skipped_and_rolled_back(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("l2o-train", *FAULTY, "optimizee.nan_samples=[7]", "guard.max_consecutive=4", *TRAIN, f"hydra.run.dir={run}",
                   cwd=tmp_path, env=PLUGINS_ENV)
    assert "rolled back to epoch 6" in proc.stderr + proc.stdout
    assert _scalars(run, "guard/rollbacks") == [(7, 1.0)]
    assert _scalars(run, "guard/skipped_steps")[-1][1] == 4  # 20 steps / unroll 5 = 4 poisoned meta-steps
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["training"]["progress"]["rollbacks"] == 1 and ckpt["training"]["progress"]["epoch"] == 120
    assert all(torch.isfinite(v).all() for v in ckpt["optimizer_state"].values())
    assert ckpt["training"]["meta_opt"]["param_groups"][0]["lr"] == pytest.approx(0.003 * 0.5)


def test_persistent_nans_stop_with_a_clear_message(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("l2o-train", *FAULTY, "optimizee.nan_samples=[3,4,5,6,7,8,9,10,11,12]",
                   "guard.max_consecutive=2", "guard.max_rollbacks=2", *TRAIN, f"hydra.run.dir={run}",
                   cwd=tmp_path, check=False, env=PLUGINS_ENV)
    assert proc.returncode == 3, proc.stderr
    assert "meta-training diverged" in proc.stderr and "after 2 rollbacks" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert all(torch.isfinite(v).all() for v in _phi(run).values())


def test_a_checkpoint_older_than_a_schedule_field_resumes_with_its_default(tmp_path, reference):
    """A run saved before `schedule.val_window` existed has no such key; it was validated the
    default way, so it resumes under the default and refuses any other value."""
    run = tmp_path / "old"
    shutil.copytree(reference, run)
    for name in ("last.pt", "last.prev.pt"):
        path = run / "checkpoints" / name
        if path.exists():
            ckpt = torch.load(path, weights_only=True)
            del ckpt["schedule"]["val_window"]
            torch.save(ckpt, path)
    err = run_cli("l2o-train", *TRAIN, "schedule.val_window=5", f"hydra.run.dir={run}", "resume=true",
                  cwd=tmp_path, check=False)
    assert err.returncode == 2 and "schedule.val_window: 1 -> 5" in err.stderr
    run_cli("l2o-train", *TRAIN[1:], "schedule.epochs=121", f"hydra.run.dir={run}", "resume=true", cwd=tmp_path)
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["training"]["progress"]["epoch"] == 121
