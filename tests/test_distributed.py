"""Multi-process meta-training under torchrun (gloo on CPU) equals one process with the same
total meta-batch, and resumes like a single process does."""
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_cli

TRAIN = ("schedule.problems_per_epoch=8", "schedule.horizon=10", "schedule.unroll=5", "schedule.val_every=2",
         "schedule.num_val=6", "optimizer.hidden_size=8", "progress=false", "threads=1")


def torchrun(nproc: int, *overrides: str, cwd: Path, check: bool = True):
    exe = Path(sys.executable).with_name("l2o-train")
    return run_cli("torchrun", "--standalone", f"--nproc_per_node={nproc}", "--no-python", str(exe), *overrides,
                   cwd=cwd, check=check)


def _phi(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["optimizer_state"]


def _scalars(run: Path, tag: str) -> list[float]:
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)]


def _assert_same_phi(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    run_cli("l2o-train", "schedule.epochs=4", *TRAIN, f"hydra.run.dir={root / 'run'}", cwd=root)
    return root / "run"


def test_two_processes_equal_one_with_the_same_meta_batch(tmp_path, single):
    run = tmp_path / "run"
    proc = torchrun(2, "schedule.epochs=4", *TRAIN, f"hydra.run.dir={run}", cwd=tmp_path)
    assert "× 2 processes" in proc.stdout
    _assert_same_phi(_phi(run), _phi(single))
    for tag in ("meta/loss", "train/final_loss", "val/final_loss"):
        torch.testing.assert_close(torch.tensor(_scalars(run, tag)), torch.tensor(_scalars(single, tag)), rtol=1e-5, atol=1e-6)
    assert (run / "result.json").is_file()


@pytest.mark.slow  # resume is tested bit for bit in one process (test_reliability); equality of 2 processes below
def test_two_process_run_resumes(tmp_path, single):
    run = tmp_path / "run"
    torchrun(2, "schedule.epochs=2", *TRAIN, f"hydra.run.dir={run}", cwd=tmp_path)
    torchrun(2, "schedule.epochs=4", "resume=true", *TRAIN, f"hydra.run.dir={run}", cwd=tmp_path)
    _assert_same_phi(_phi(run), _phi(single))


def test_a_meta_batch_that_does_not_split_is_refused(tmp_path):
    proc = torchrun(2, "schedule.epochs=2", *TRAIN, "schedule.problems_per_epoch=3", f"hydra.run.dir={tmp_path / 'r'}",
                    cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "schedule.problems_per_epoch=3 does not split evenly over 2 processes" in proc.stderr
