"""`hydra/sweeper=l2o_units`: a multirun whose jobs are an explicit list of override lists (the units
of an l2o-study wave), each in its own sub-directory of the sweep directory, launched through
whatever Hydra launcher is configured (the basic one, joblib, submitit).

Hydra's own sweepers build jobs as a cartesian product of swept values; a study's units are not a
product (each has its own overrides), so this sweeper reads them from a JSON file written by
`l2o-study run`: [{"dir": "mnist/train", "overrides": ["experiment=mnist", ...]}, ...].
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class UnitsSweeperConf:
    _target_: str = "hydra_plugins.l2o_units_sweeper.units_sweeper.UnitsSweeper"
    units: Optional[str] = None   # the JSON file of jobs


ConfigStore.instance().store(group="hydra/sweeper", name="l2o_units", node=UnitsSweeperConf, provider="l2o")


class UnitsSweeper(Sweeper):
    def __init__(self, units: Optional[str] = None) -> None:
        self.units = units
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        if not self.units:
            raise ValueError("hydra/sweeper=l2o_units needs hydra.sweeper.units=FILE (written by l2o-study run)")
        units = json.loads(Path(self.units).read_text())
        batch = [[*unit["overrides"], *arguments, f"hydra.sweep.subdir={unit['dir']}"] for unit in units]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.validate_batch_is_legal(batch)
        if type(self.launcher).__name__ == "BasicLauncher":
            return [self._one(job, idx) for idx, job in enumerate(batch)]
        return list(self.launcher.launch(batch, initial_job_idx=0))

    def _one(self, job: List[str], idx: int) -> Any:
        """In-process jobs one at a time, so that a unit that fails (a user error exits with code 2,
        the NaN guard with 3) is logged and the next one still runs; a signal (exit 128+n) stops all."""
        try:
            (ret,) = self.launcher.launch([job], initial_job_idx=idx)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if code >= 128:
                raise
            log.error(f"unit {job[-1].split('=', 1)[1]} failed (exit code {code})")
            return None
        if ret.status == JobStatus.FAILED:
            log.error(f"unit {job[-1].split('=', 1)[1]} failed: {ret._return_value!r}")
        return ret
