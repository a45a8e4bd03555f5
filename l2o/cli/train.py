"""`l2o-train`: meta-train the learned optimizer described by the config."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from l2o.cli.common import CONF_DIR, build, choice, run_dir, user_errors
from l2o.errors import L2OError
from l2o.meta.trainer import meta_train
from l2o.optimizers.lstm import CoordinatewiseLSTM
from l2o.utils import configure_torch, resolve_device, seed_everything


@user_errors("l2o-train")
def train(cfg: DictConfig) -> float:
    # Everything is built and checked before any work starts.
    device = resolve_device(cfg.device)
    if not isinstance(cfg.seed, int):
        raise L2OError(f"seed={cfg.seed!r} must be an integer.")
    configure_torch()
    seed_everything(cfg.seed)
    family = build(cfg.optimizee, "optimizee")
    net = build(cfg.optimizer, "optimizer")
    if not isinstance(net, CoordinatewiseLSTM):
        raise L2OError(
            f"optimizer={choice('optimizer')!r} is a baseline, not a learned optimizer; l2o-train meta-trains "
            "optimizer=lstm (baselines are compared by l2o-eval)."
        )
    schedule = build(cfg.schedule, "schedule")
    out = run_dir()

    result = meta_train(
        net,
        family,
        schedule,
        device=device,
        run_dir=out,
        seed=cfg.seed,
        checkpoint_extra={
            "optimizee": {"name": choice("optimizee"), "config": OmegaConf.to_container(cfg.optimizee, resolve=False)},
            "config": OmegaConf.to_container(cfg, resolve=True),
        },
        progress=cfg.progress,
    )
    print(
        f"l2o-train: done, {result['epochs_run']} epochs on {device}; best validation loss {result['best_val']:.4g} "
        f"(epoch {result['best_epoch'] + 1}); checkpoint {result['checkpoint']}; "
        f"TensorBoard: tensorboard --logdir {result['tensorboard']}"
    )
    return result["best_val"]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    main()
