import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
# test-only plugins (tests/plugins: fault injection, toy optimizees) for the CLIs run as subprocesses
PLUGINS_ENV = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
FAULTY = (f"--config-dir={TESTS / 'plugins' / 'conf'}", "optimizee=faulty")
# the offline data: $L2O_DATA_DIR, else ../shared/data beside the checkout (as in CI)
SHARED_DATA = Path(os.environ.get("L2O_DATA_DIR") or REPO.parent / "shared" / "data")
# the CLIs run in process (cli_in_process) read it from the environment too, so plain `pytest` works
os.environ["L2O_DATA_DIR"] = str(SHARED_DATA)
# under pytest-xdist (scripts/test.sh runs `-n 2` on 2 cores) one core per worker: torch's default of
# one thread per core in every worker and every CLI it spawns would oversubscribe the machine
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def run_cli(name: str, *overrides: str, cwd: Path, check: bool = True,
            env: dict[str, str] | None = None, kill_after: int | None = None) -> subprocess.CompletedProcess:
    """Run an installed console script (`l2o-train`, `l2o-eval`) as a user would; `kill_after=N`
    SIGKILLs l2o-eval once it has saved N units (tests/plugins/faults.py)."""
    cmd = [str(Path(sys.executable).with_name(name)), *overrides]
    if kill_after is not None:
        cmd = [sys.executable, "-m", "plugins.faults", "kill-after", str(kill_after), name, *overrides]
        env = {**PLUGINS_ENV, **(env or {})}
    env = dict(os.environ, L2O_DATA_DIR=str(SHARED_DATA), **(env or {}))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(overrides)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_in_process(name: str, *args: str, cwd: Path) -> tuple[int, str]:
    """Exit code and stderr of l2o-train / l2o-eval's entry function on the config Hydra composes from
    the same command line, in this process: for bad-input cases, which stop before the run directory
    (a process per case would cost seconds of `import torch` each)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from l2o.cli import eval as eval_cli
    from l2o.cli import train as train_cli
    from l2o.cli.common import CONF_DIR

    config, entry = {"l2o-train": ("train", train_cli.train), "l2o-eval": ("eval", eval_cli.run)}[name]
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose(config, list(args), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    err, here = io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
            entry(cfg)
    finally:
        os.chdir(here)
        HydraConfig.instance().cfg = None
    return exit_.value.code, err.getvalue()



TINY_TRAIN = (
    "schedule.epochs=4",
    "schedule.problems_per_epoch=4",
    "schedule.horizon=10",
    "schedule.unroll=5",
    "schedule.val_every=2",
    "schedule.num_val=4",
    "progress=false",
)
TINY_EVAL = ("num_test=8", "tuning.num=3", "tuning.num_problems=4", "progress=false")


def train_losses(model, opt, loss_fn, steps: int) -> list[float]:
    """A plain PyTorch training loop; the loss before each step."""
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def assert_as_recorded(now: torch.Tensor, recorded: torch.Tensor, verified_on: str | None, what: str = "") -> None:
    """A recorded fixture's numbers: bitwise on the CPU model the fixture was verified on (its
    `verified_on_cpu`), elsewhere within a few units in the last place. torch's CPU kernels (MKL
    GEMM, vectorized exp/tanh) round differently on other CPU models: the shipped optimizers'
    float32 updates (~1e-2) differ by at most 6e-8 between the AMD EPYC the fixtures were verified on
    and an Intel Xeon (AVX-512), the float64 format-1 updates by 7e-18."""
    from l2o.study.record import cpu_model

    if verified_on is not None and cpu_model() == verified_on:
        assert torch.equal(now, recorded), what
    else:
        atol = 1e-6 if recorded.dtype in (torch.float32, torch.bfloat16, torch.float16) else 1e-14
        torch.testing.assert_close(now, recorded, rtol=0, atol=atol, msg=lambda m: f"{what}: {m}")
