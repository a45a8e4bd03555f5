"""Wiring shared by the CLIs: user errors as one paragraph, config nodes to objects."""
from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from l2o import checks
from l2o.data import dataset_error
from l2o.errors import L2OError


def user_errors(prog: str) -> Callable:
    """Turn an L2OError raised before or during the run into `prog: error: ...` and exit 2."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except L2OError as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                sys.exit(exc.exit_code)

        return inner

    return wrap


def build(node: DictConfig | dict, key: str) -> Any:
    """`hydra.utils.instantiate` whose failures name the config key and the cause."""
    try:
        return instantiate(node)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, L2OError):
            raise cause
        msg = str(cause or exc).strip().splitlines()[-1]
        full_key = re.search(r"full_key: (\S+)", str(exc))
        sub = OmegaConf.select(node, full_key.group(1)[len(key) + 1 :]) if full_key and isinstance(node, DictConfig) else None
        if isinstance(sub, DictConfig) and "root" in sub:  # a dataset node: say how to fix the path
            raise dataset_error(full_key.group(1), str(sub.get("_target_")), str(sub.root), msg) from exc
        stray = re.search(r"unexpected keyword argument '(\w+)'", msg)
        if stray and full_key:  # typically a preset's setting for another group choice (truncation=...)
            where = f"{full_key.group(1)}.{stray.group(1)}"
            msg += (f". {where} is not a setting of {sub.get('_target_') if isinstance(sub, DictConfig) else 'this choice'}: "
                    f"when a preset set it for another choice of this group (truncation=..., imitation=...), "
                    f"delete it with '~{where}'")
        raise L2OError(f"{key} could not be built from {OmegaConf.to_container(node) if isinstance(node, DictConfig) else node}: {msg}") from exc


def run_dir() -> Path:
    """The Hydra run directory (honours hydra.run.dir / the sweep subdir), checked writable."""
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise L2OError(f"hydra.run.dir={str(out)!r} is not a writable directory ({exc.strerror}); choose another.") from exc
    return out


def choice(group: str) -> str | None:
    return HydraConfig.get().runtime.choices.get(group)


def hparams(cfg: DictConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    """The run's hyperparameters for TensorBoard's HParams view: every scalar field under
    `keys` (config groups or single values) and each group's chosen option, so that whatever a
    sweep varies shows up as a column. Lists become text; `_target_`s and paths are left out."""
    out: dict[str, Any] = {}
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k != "_target_" and k != "root":
                    walk(f"{prefix}.{k}", v)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        elif value is None:
            out[prefix] = "null"
        else:
            out[prefix] = str(value)

    for key in keys:
        if choices.get(key):
            out[key] = choices[key]
        node = OmegaConf.select(cfg, key)
        walk(key, OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node)
    return out


def set_threads(cfg: DictConfig) -> None:
    """`threads=N` caps torch's intra-op threads: with parallel sweep jobs or several
    processes per machine, N × jobs should not exceed the cores (oversubscription is slow)."""
    threads = checks.integer(cfg.threads, "threads", allow_none=True)
    if threads is not None:
        torch.set_num_threads(threads)


# Presets that became overrides of a paper preset (conf/experiment/ keeps only the paper's settings;
# how φ is trained is conf/recipe/, how it is judged conf/protocol/).
REMOVED_PRESETS = {
    "mnist_dm": "experiment=mnist optimizer=lstm_dm",
    "mnist_steps200": "experiment=mnist protocol=steps200",
    "mnist_units40": "experiment=mnist optimizee.hidden=[40]",
    "mnist_layers2": "experiment=mnist optimizee.hidden=[20,20]",
    "mnist_relu": "experiment=mnist optimizee.activation=relu",
    "mnist_sweep": "l2o-study run paper (its units mnist/sweep/*), or --multirun experiment=mnist protocol=sweep "
                   "optimizee.hidden=[5],[10],[20],[35],[50],[5,5],[10,10],[20,20],[35,35],[50,50]",
    "mnist_steps1000": "experiment=mnist protocol=steps1000",
    "mnist_steps10000": "experiment=mnist protocol=steps10000",
    "mnist_relu_steps1000": "experiment=mnist protocol=steps1000 optimizee.activation=relu",
    "mnist_relu_steps10000": "experiment=mnist protocol=steps10000 optimizee.activation=relu",
    "mnist_layers2_steps1000": "experiment=mnist protocol=steps1000 optimizee.hidden=[20,20]",
    "mnist_layers2_steps10000": "experiment=mnist protocol=steps10000 optimizee.hidden=[20,20]",
    "mnist_stable": "experiment=mnist recipe=stable protocol=steps1000 experiment_name=mnist_stable",
    "mnist_stable_rnnprop": "experiment=mnist recipe=stable optimizer=rnnprop protocol=steps1000 experiment_name=mnist_stable_rnnprop",
    "mnist_stable_gac": "experiment=mnist recipe=stable optimizer=lstm_gac protocol=steps1000 experiment_name=mnist_stable_gac",
    "mnist_robust": "experiment=mnist recipe=robust optimizer=rnnprop experiment_name=mnist_robust",
    "mnist_cl_il": "experiment=mnist recipe=cl_il optimizer=lstm_dm protocol=steps1000 experiment_name=mnist_cl_il",
    "quadratic_stable": "experiment=quadratic recipe=stable_quadratic",
    "quadratic_dm": "experiment=quadratic optimizer=lstm_dm optimizee.distribution=uniform schedule.problems_per_epoch=128 (l2o-train)",
    "cifar_sub": "experiment=cifar10 optimizee.labels=[5,6,7,8,9] experiment_name=cifar_sub",
    "cifar_sub_cpu": "experiment=cifar10_cpu optimizee.labels=[5,6,7,8,9] experiment_name=cifar_sub_cpu",
    "cifar5": "experiment=cifar10 optimizee.labels=[0,1,2,3,4] +learned.lstm_sub=outputs/cifar_sub/train",
    "cifar2": "experiment=cifar10 optimizee.labels=[0,1] +learned.lstm_sub=outputs/cifar_sub/train",
    "cifar5_cpu": "experiment=cifar10_cpu optimizee.labels=[0,1,2,3,4] +learned.lstm_sub=outputs/cifar_sub_cpu/train",
    "cifar2_cpu": "experiment=cifar10_cpu optimizee.labels=[0,1] +learned.lstm_sub=outputs/cifar_sub_cpu/train",
    "neural_art_128": "experiment=neural_art optimizee.size=128",
    "neural_art_newstyle": "experiment=neural_art optimizee.style=skimage:brick.png",
}


def refuse_removed_presets(prog: str, argv: list[str] | None = None) -> None:
    """A removed preset on the command line is an error naming its replacement (before Hydra's own
    "could not find" error, which would not)."""
    for arg in sys.argv[1:] if argv is None else argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") != "experiment":
            continue
        for name in value.split(","):  # --multirun experiment=a,b
            if name in REMOVED_PRESETS:
                print(f"{prog}: error: experiment={name} was removed; use {REMOVED_PRESETS[name]}", file=sys.stderr)
                sys.exit(2)


# conf/ sits at the repository root beside l2o/ (an editable install, `pip install -e .`).
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
