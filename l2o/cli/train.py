"""`l2o-train`: meta-train the learned optimizer described by the config."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from l2o.checkpoint import (CHECKPOINT_DIR, architecture_diffs, check_architecture, constructor_default,
                            load_checkpoint, load_with_fallback)
from l2o import checks
from l2o.cli.common import CONF_DIR, build, choice, hparams, refuse_removed_presets, run_dir, set_threads, user_errors
from l2o.errors import L2OError
from l2o.meta.distributed import close_world, init_world
from l2o.meta.schedule import Schedule
from l2o.meta.trainer import Interrupted, NanGuard, meta_train
from l2o.optimizers.base import OptimizerNet
from l2o.utils import atomic_write_text, configure_torch, resolve_device, seed_everything

# schedule fields a resumed run may change (e.g. train for more epochs)
RESUMABLE_CHANGES = ("epochs", "patience", "val_every")


def _guard(cfg: DictConfig) -> NanGuard:
    g = cfg.guard
    return NanGuard(checks.integer(g.max_consecutive, "guard.max_consecutive"),
                    checks.number(g.lr_factor, "guard.lr_factor", above=0, below=1),
                    checks.integer(g.max_rollbacks, "guard.max_rollbacks", low=0))


def _resume_state(cfg: DictConfig, out: Path, net: OptimizerNet, schedule: Any, optimizee: dict) -> dict | None:
    """The checkpoint to continue from, after checking it belongs to this configuration."""
    last = out / CHECKPOINT_DIR / "last.pt"
    if not cfg.resume:
        if last.exists():
            raise L2OError(
                f"hydra.run.dir={str(out)!r} already holds a run ({last}); pass resume=true to continue it, "
                "or choose another hydra.run.dir."
            )
        return None
    if not last.exists() and not last.with_name("last.prev.pt").exists():
        print(f"l2o-train: resume=true but {last} does not exist yet: starting a new run.", file=sys.stderr)
        return None
    ckpt = load_with_fallback(last)
    diffs = architecture_diffs(ckpt["optimizer"], net.full_config())
    saved = ckpt.get("schedule", {})
    for k, v in schedule.to_dict().items():
        had = saved.get(k, constructor_default(Schedule, k))  # a field newer than the checkpoint: its default
        if k not in RESUMABLE_CHANGES and had != v:
            diffs.append(f"schedule.{k}: {had!r} -> {v!r}")
    if ckpt.get("optimizee", {}).get("config") != optimizee:
        diffs.append("optimizee: the checkpoint's optimizee config differs")
    if ckpt.get("config", {}).get("seed") != cfg.seed:
        diffs.append(f"seed: {ckpt.get('config', {}).get('seed')!r} -> {cfg.seed!r}")
    if diffs:
        raise L2OError(f"resume=true, but {ckpt['path']} was trained with a different configuration ("
                       + "; ".join(diffs) + "). Rerun with the original settings, or choose another hydra.run.dir.")
    return ckpt


def _init_from(cfg: DictConfig, net: OptimizerNet) -> None:
    """`init=CKPT`: start from a trained φ (a fresh meta-optimizer, schedule and epoch count), e.g. to
    continue a T = 100 optimizer on longer horizons or another meta-objective. A resumed run's own
    last.pt replaces it."""
    if cfg.init is None:
        return
    if not isinstance(cfg.init, str):
        raise L2OError(f"init={cfg.init!r} must be the path of a checkpoint or of an l2o-train run directory.")
    try:
        ckpt = load_checkpoint(cfg.init)
    except L2OError as exc:
        raise L2OError(f"init: {exc}") from exc
    free = net.init_free_fields(ckpt["optimizer"])  # e.g. the LSTM's `odd`
    check_architecture(ckpt, {k: v for k, v in net.full_config().items() if k not in free})
    try:
        net.load_state_dict(net.adapt_state_dict(ckpt["optimizer_state"], ckpt["optimizer"]))
    except RuntimeError as exc:
        raise L2OError(f"init={cfg.init!r}: its weights do not fit the configured optimizer: {exc}") from exc
    print(f"l2o-train: φ initialised from {ckpt['path']}", file=sys.stderr)


@user_errors("l2o-train")
def train(cfg: DictConfig) -> float:
    # Everything is built and checked before any work starts.
    device = resolve_device(cfg.device)
    set_threads(cfg)
    checks.integer(cfg.seed, "seed", low=0)
    checks.flag(cfg.resume, "resume")
    checks.integer(cfg.checkpoint_every, "checkpoint_every")
    guard = _guard(cfg)
    configure_torch()
    seed_everything(cfg.seed)
    net = build(cfg.optimizer, "optimizer")
    if not isinstance(net, OptimizerNet):
        raise L2OError(
            f"optimizer={choice('optimizer')!r} is a baseline, not a learned optimizer; l2o-train meta-trains "
            "learned optimizers (optimizer=lstm, lstm_gac, rnnprop, ...; baselines are compared by l2o-eval)."
        )
    _init_from(cfg, net)
    if cfg.compile:
        net.compile_layers()
    schedule = build(cfg.schedule, "schedule")
    family = build(cfg.optimizee, "optimizee")
    world, device = init_world(device)  # torchrun: join the process group; else one process
    try:
        return _train(cfg, net, schedule, family, device, world, guard)
    finally:
        close_world(world)


def _train(cfg: DictConfig, net: OptimizerNet, schedule: Any, family: Any, device: Any, world: Any,
           guard: NanGuard) -> float:
    # every process uses rank 0's run dir (a `${now:...}` default can differ by a second between processes)
    out = Path(world.broadcast(str(run_dir()) if world.is_main else None))
    optimizee = OmegaConf.to_container(cfg.optimizee, resolve=False)
    resume_from = _resume_state(cfg, out, net, schedule, optimizee)
    world.barrier()  # nobody writes a checkpoint before every process has checked the run dir

    try:
        result = meta_train(
            net,
            family,
            schedule,
            device=device,
            run_dir=out,
            seed=cfg.seed,
            checkpoint_extra={
                "optimizee": {"name": choice("optimizee"), "config": optimizee,
                              "description": family.description},
                "config": OmegaConf.to_container(cfg, resolve=True),
            },
            progress=cfg.progress,
            resume_from=resume_from,
            checkpoint_every=cfg.checkpoint_every,
            nan_guard=guard,
            world=world,
            hparams=hparams(cfg, ("optimizee", "optimizer", "schedule", "seed")),
        )
    except Interrupted as exc:
        if world.is_main:
            print(
                f"l2o-train: stopped by {exc}; checkpoint saved to {out / CHECKPOINT_DIR / 'last.pt'}. "
                "Resume: rerun the same command with resume=true (and the same hydra.run.dir).",
                file=sys.stderr,
            )
        sys.exit(128 + exc.signum)
    if world.is_main:
        atomic_write_text(out / "result.json", json.dumps(result, indent=2) + "\n")  # read by `python -m l2o.sweeps`
        print(
            f"l2o-train: done, {result['epochs_run']} epochs on {device}"
            + (f" × {world.size} processes" if world.distributed else "")
            + f"; best validation loss {result['best_val']:.4g} (epoch {result['best_epoch'] + 1}); "
            f"checkpoint {result['checkpoint']}; TensorBoard: tensorboard --logdir {result['tensorboard']}"
        )
    return result["best_val"]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _main(cfg: DictConfig) -> float:
    return train(cfg)


def main() -> None:
    refuse_removed_presets("l2o-train")
    _main()


if __name__ == "__main__":
    main()
