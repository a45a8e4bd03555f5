"""scripts/update_stats.py, the long-horizon diagnostic (where a learned optimizer's steps go), on the shipped MNIST φ."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    env = dict(os.environ, L2O_DATA_DIR=str(SHARED_DATA))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "update_stats.py"),
                           str(ROOT / "l2o" / "pretrained" / "mnist.pt"), "--steps", "7", "--every", "3", *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow  # three runs of the script; test_adam_runs_beside_it runs it once in the default suite
def test_step_factor_scales_every_step_and_zero_leaves_the_parameters_alone():
    plain, frozen = _run("--adam-lr", "0"), _run("--adam-lr", "0", "--step-factor", "0")
    assert len(re.findall(r"learned t=\s+[36] loss", plain)) == 2
    assert "mean 0, max 0" in frozen and "mean 0, max 0" not in plain
    size = [float(m) for m in re.findall(r"\|u\| rest (\S+)", plain)]
    half = [float(m) for m in re.findall(r"\|u\| rest (\S+)", _run("--adam-lr", "0", "--step-factor", "0.5"))]
    assert size[0] > 0 and half[0] < size[0]


def test_adam_runs_beside_it():
    out = _run("--adam-lr", "0.01")
    assert len(re.findall(r"adam t=\s+[36] loss", out)) == 2 and "adam: |θ_T − θ_0|" in out
