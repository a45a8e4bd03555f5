"""`l2o-eval`: a trained optimizer against learning-rate-tuned SGD, RMSprop, Adam and NAG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from l2o.checkpoint import check_architecture, load_checkpoint, net_from_checkpoint, training_horizon
from l2o import checks
from l2o.cli.common import CONF_DIR, build, choice, hparams, refuse_removed_presets, run_dir, set_threads, user_errors
from l2o.errors import L2OError
from l2o.evaluation import gallery
from l2o.evaluation.evaluate import evaluate
from l2o.evaluation.protocol import Protocol
from l2o.optimizers.base import OptimizerNet
from l2o.optimizers.files import fingerprint
from l2o.utils import configure_torch, resolve_device, write_hparams

def _check(cfg: DictConfig) -> None:
    """The keys not of the protocol (Protocol.from_config checks those), before any work."""
    checks.integer(cfg.gallery.problems, "gallery.problems")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in cfg.gallery.steps):
        raise L2OError(f"gallery.steps={list(cfg.gallery.steps)!r} must be a list of steps >= 0.")
    checks.flag(cfg.resume, "resume")
    unknown = [n for n in cfg.compare if n not in cfg.baselines]
    if unknown:
        raise L2OError(f"compare={list(cfg.compare)} names unknown baselines {unknown}; allowed: {list(cfg.baselines)}.")
    Protocol.from_config(cfg, default_steps=1)


def _learned(cfg: DictConfig, ckpt: dict[str, Any], checkpoint: str) -> tuple[str, dict[str, OptimizerNet], dict[str, str]]:
    """The checkpoint's optimizer (checked against `optimizer=` if given) and those of `learned`, each
    with its `learned_settings`, and the fingerprints of their φ as their checkpoints hold them."""
    if cfg.get("optimizer") is not None:
        check_architecture(ckpt, OmegaConf.to_container(cfg.optimizer, resolve=True))
    settings = OmegaConf.to_container(cfg.get("learned_settings") or OmegaConf.create({}), resolve=True)
    main_net = net_from_checkpoint(ckpt)
    checkpoints = {cfg.name or main_net.short_name(): ckpt}
    stored = {next(iter(checkpoints)): main_net}   # each φ as its checkpoint holds it
    for extra, path in (cfg.get("learned") or {}).items():  # more trained optimizers, same test problems
        if extra in checkpoints or extra in cfg.baselines:
            raise L2OError(f"learned.{extra}: the name {extra!r} is taken; choose another.")
        checkpoints[extra] = load_checkpoint(path)
        stored[extra] = net_from_checkpoint(checkpoints[extra])
    unknown = [n for n in settings if n not in checkpoints]
    if unknown or not all(isinstance(v, dict) for v in settings.values()):
        raise L2OError(f"learned_settings={settings!r}: give {{name: {{field: value}}}} for the learned optimizers "
                       f"{list(checkpoints)}; unknown: {unknown}.")
    learned = {n: net_from_checkpoint(checkpoints[n], settings[n]) if n in settings else net for n, net in stored.items()}
    prints = {n: fingerprint(net) for n, net in stored.items()}
    if cfg.compile:
        for net in learned.values():
            net.compile_layers()
    return next(iter(learned)), learned, prints


def _family(cfg: DictConfig, ckpt: dict[str, Any]) -> tuple[Any, str]:
    """The optimizee to evaluate on (the checkpoint's unless `optimizee=` is given) and its name."""
    if cfg.get("optimizee") is not None:
        optimizee_cfg, optimizee_name = cfg.optimizee, choice("optimizee")
    else:
        optimizee_cfg, optimizee_name = ckpt["optimizee"]["config"], ckpt["optimizee"]["name"]
    family = build(optimizee_cfg, "optimizee")
    if family.training_mix:  # one member per batch, not a test setting
        raise L2OError(f"the optimizee {optimizee_name!r} is a training mix; evaluate on one of its members: "
                       "optimizee=mnist_mlp (optimizee.activation=relu, ...), optimizee=quadratic, or an experiment preset.")
    trained_on = ckpt["optimizee"].get("description")
    if family.description and trained_on and family.description != trained_on:
        print(f"l2o-eval: note: trained on {trained_on}; evaluating on {family.description}")
    if cfg.gallery.steps and not family.draws_images:
        raise L2OError(f"gallery.steps is set, but {optimizee_name} is not an image optimizee (neural_art).")
    return family, optimizee_name


@user_errors("l2o-eval")
def run(cfg: DictConfig) -> float:
    checkpoint = cfg.checkpoint
    if checkpoint is None and cfg.experiment_name:
        checkpoint = f"outputs/{cfg.experiment_name}/train"  # where `l2o-train experiment=NAME` writes
    if checkpoint is None:
        raise L2OError("checkpoint is required: l2o-eval checkpoint=PATH (a .pt file or an l2o-train run directory).")
    _check(cfg)
    device = resolve_device(cfg.device)
    set_threads(cfg)
    configure_torch()
    ckpt = load_checkpoint(checkpoint)
    name, learned, prints = _learned(cfg, ckpt, checkpoint)
    if cfg.get("task") is not None:
        return _run_task(cfg, checkpoint, name, learned, prints)
    family, optimizee_name = _family(cfg, ckpt)
    baselines = {b: build(cfg.baselines[b], f"baselines.{b}") for b in cfg.compare}
    protocol = Protocol.from_config(cfg, default_steps=training_horizon(ckpt))
    out = run_dir()
    if cfg.baselines_from is not None:
        _check_baselines_source(cfg)
    described = family.description
    meta = {**_provenance(cfg, name, checkpoint, prints), **({"optimizee_description": described} if described else {})}
    summary, table = evaluate(family, learned=learned, baselines=baselines, protocol=protocol, device=device, out_dir=out,
                              optimizee_name=optimizee_name, progress=cfg.progress, meta=meta, resume=cfg.resume,
                              baselines_from=cfg.baselines_from)
    hp = dict(hparams(cfg, ("optimizee", "steps", "num_test", "tuning")), optimizee=optimizee_name, steps=protocol.steps,
              checkpoint=str(checkpoint))
    write_hparams(out / "tb", hp, {f"hparam/final_loss/{n}": r["final_loss"] for n, r in summary["optimizers"].items()})
    print(table)
    files = "summary.json, summary.md, curves.csv, loss.png, tb/"
    if cfg.gallery.steps:
        lrs = {n: r["lr"] for n, r in summary["optimizers"].items()}
        gallery.write(out, gallery.collect(family, learned, baselines, lrs, cfg.gallery.steps, cfg.gallery.problems, device),
                      f"{described}: {cfg.gallery.problems} test problems")
        files += ", images.png"
    print(f"l2o-eval: results in {out} ({files})")
    return summary["optimizers"][name]["final_loss"]


def _provenance(cfg: DictConfig, name: str, checkpoint: str, prints: dict[str, str]) -> dict[str, Any]:
    """Where each learned optimizer came from, and a fingerprint of its φ (checked on resume, and
    by l2o-study before it reuses the results)."""
    return {"checkpoints": {n: str(p) for n, p in [(name, checkpoint), *(cfg.get("learned") or {}).items()]},
            "fingerprints": prints}


def _run_task(cfg: DictConfig, checkpoint: str, name: str, learned: dict[str, OptimizerNet], prints: dict[str, str]) -> float:
    """`task=NAME`: the learned optimizers and the baselines train a real task (l2o.tasks)."""
    from l2o.tasks.evaluate import evaluate_task

    task = build(cfg.task, "task")
    task.check()
    baselines = {b: build(cfg.baselines[b], f"baselines.{b}") for b in cfg.compare}
    protocol = Protocol.from_config(cfg, default_steps=task.steps)
    out = run_dir()
    if cfg.baselines_from is not None:
        _check_baselines_source(cfg)
    meta = _provenance(cfg, name, checkpoint, prints)
    summary, table = evaluate_task(task, learned=learned, baselines=baselines, protocol=protocol, out_dir=out,
                                   task_name=choice("task") or "task", progress=cfg.progress, meta=meta, resume=cfg.resume,
                                   baselines_from=cfg.baselines_from)
    print(table)
    print(f"l2o-eval: results in {out} (summary.json, summary.md, curves.csv, loss.png, tb/)")
    return summary["optimizers"][name]["final_loss"]


def _check_baselines_source(cfg: DictConfig) -> None:
    """`baselines_from` must have evaluated the same optimizee and baselines (its Hydra config says);
    the evaluation settings are checked against its partial/meta.json by `evaluate`."""
    source = Path(str(cfg.baselines_from)).expanduser()
    saved = source / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise L2OError(f"baselines_from={str(source)!r} has no .hydra/config.yaml; pass the run directory of an "
                       "earlier l2o-eval run.")
    theirs = OmegaConf.load(saved)

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node

    diffs = []
    # no optimizee in the config: the checkpoint's, so the checkpoints' optimizees are compared by `meta`
    for group in ("optimizee", "task"):
        if plain(theirs.get(group)) != plain(cfg.get(group)):
            diffs.append(group)
    for name in cfg.compare:
        their_baseline = plain((theirs.get("baselines") or {}).get(name))
        if their_baseline is None or their_baseline != plain(cfg.baselines[name]):
            diffs.append(f"baselines.{name}")
    if diffs:
        raise L2OError(f"baselines_from={str(source)!r} evaluated different {', '.join(diffs)}; its baselines cannot "
                       "stand in for this evaluation's.")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def _main(cfg: DictConfig) -> float:
    return run(cfg)


def main() -> None:
    refuse_removed_presets("l2o-eval")
    _main()


if __name__ == "__main__":
    main()
