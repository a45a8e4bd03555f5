"""Meta-training by truncated BPTT: the whole loop, in one place.

Every epoch boundary is a consistent state (φ, Adam's moments, the lr schedule, the
task sampler's generator, the counters); `last.pt` holds one, so a run killed at any
point and resumed replays the lost epochs bit for bit.
"""
from __future__ import annotations

import copy
import math
import random
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from l2o.checkpoint import CHECKPOINT_DIR, save_checkpoint
from l2o.errors import L2OError
from l2o.meta.distributed import World
from l2o.meta.schedule import Schedule
from l2o.meta.unroll import rollout, start, unroll
from l2o.optimizees.base import SPLIT_OFFSETS, Family, split_seeds
from l2o.optimizers.lstm import CoordinatewiseLSTM
from l2o.utils import write_hparams


class TrainingDiverged(L2OError):
    """Non-finite meta-gradients persisted through every allowed rollback."""

    exit_code = 3


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the last checkpoint was written before raising."""

    def __init__(self, signum: int, epoch: int):
        super().__init__(f"{signal.Signals(signum).name} at epoch {epoch}")
        self.signum, self.epoch = signum, epoch


@dataclass
class NanGuard:
    """A non-finite meta-loss or meta-gradient is skipped; after `max_consecutive` in a row the
    run rolls back to the last good checkpoint with the meta-lr × `lr_factor`; after
    `max_rollbacks` rollbacks it stops."""

    max_consecutive: int = 5
    lr_factor: float = 0.5
    max_rollbacks: int = 3


@dataclass
class Progress:
    epoch: int = 0  # the next epoch to run
    best_val: float = math.inf
    best_epoch: int = -1
    checks_since_best: int = 0
    skipped: int = 0
    consecutive_bad: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0  # product of the rollbacks' lr factors


def mean_or_inf(total: float, count: int) -> float:
    """A mean over problems from their sum; a non-finite sum scores +inf (a diverged φ is worst)."""
    return total / count if math.isfinite(total) else math.inf


def validate(net: CoordinatewiseLSTM, val_problem, horizons: list[int], world: World = World(),
             num_val: int | None = None) -> dict[int, float]:
    """Mean loss f(θ_T) of the frozen optimizer on the fixed validation problems at each T in
    `horizons` (one rollout to the longest); a non-finite loss anywhere scores +inf. Under
    several processes each holds some of the `num_val` problems and the sums are all-reduced."""
    losses = rollout(net, val_problem, max(horizons))[0]
    sums = world.sum(losses[horizons].sum(dim=1))
    n = num_val or losses.shape[1]
    return {h: mean_or_inf(float(s), n) for h, s in zip(horizons, sums)}


class _NoWriter:
    """What processes other than rank 0 log to."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def rng_state(seed_gen: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "sampler": seed_gen.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any], seed_gen: torch.Generator) -> None:
    seed_gen.set_state(state["sampler"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    random.setstate(_tuplify(state["python"]))


def _tuplify(x: Any) -> Any:
    return tuple(_tuplify(v) for v in x) if isinstance(x, (list, tuple)) else x


class _SignalTrap:
    """Turn SIGINT/SIGTERM into a flag the loop checks at epoch boundaries."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_SignalTrap":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def meta_train(
    net: CoordinatewiseLSTM,
    family: Family,
    schedule: Schedule,
    *,
    device: torch.device,
    run_dir: str | Path,
    seed: int = 0,
    checkpoint_extra: dict[str, Any] | None = None,
    progress: bool = True,
    resume_from: dict[str, Any] | None = None,
    checkpoint_every: int = 10,
    nan_guard: NanGuard | None = None,
    world: World = World(),
    hparams: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Meta-train φ = net's parameters; write TensorBoard scalars and best/last checkpoints.

    Each epoch draws `problems_per_epoch` fresh training problems (seeds from a generator
    seeded with `seed`), runs them for the epoch's horizon (`schedule.horizon_at`) in unrolls of `unroll` steps and
    takes one Adam step on φ after each unroll, carrying θ and the LSTM state, detached,
    into the next unroll. Every `val_every` epochs φ is scored on fixed validation
    problems; the best φ by final validation loss is kept. `resume_from` (a loaded
    `last.pt`) continues a run exactly where that checkpoint left it. Under torchrun (`world`)
    each process runs its share of the meta-batch (see l2o.meta.distributed). `hparams`, when
    given, go to TensorBoard's HParams view with the run's final metrics.
    """
    guard = nan_guard or NanGuard()
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    net.to(device)
    meta_opt = torch.optim.Adam(net.parameters(), lr=schedule.meta_lr)
    lr_sched = torch.optim.lr_scheduler.ExponentialLR(meta_opt, gamma=schedule.meta_lr_decay)
    weights = schedule.step_weights(schedule.max_horizon).to(device)
    if schedule.num_val < world.size:
        raise L2OError(f"schedule.num_val={schedule.num_val} is smaller than the {world.size} processes; "
                       "every process needs a validation problem.")
    val_problem = family.sample(split_seeds("val", schedule.num_val)[world.rank :: world.size], device)
    seed_gen = torch.Generator().manual_seed(seed)
    extra = dict(checkpoint_extra or {}, schedule=schedule.to_dict())
    prog = Progress()

    def snapshot() -> dict[str, Any]:
        return dict(extra, progress=asdict(prog), meta_opt=meta_opt.state_dict(), lr_sched=lr_sched.state_dict(),
                    rng=rng_state(seed_gen))

    def restore(ckpt: dict[str, Any]) -> None:
        nonlocal prog
        net.load_state_dict(ckpt["net_state"])
        meta_opt.load_state_dict(ckpt["meta_opt"])
        lr_sched.load_state_dict(ckpt["lr_sched"])
        set_rng_state(ckpt["rng"], seed_gen)
        prog = Progress(**ckpt["progress"])

    if resume_from is not None:
        restore(resume_from)
    last_good = copy.deepcopy({"net_state": net.state_dict(), **snapshot()})
    # purge_step drops events a killed run logged after its last checkpoint: no duplicated steps
    writer = (SummaryWriter(str(run_dir / "tb"), purge_step=prog.epoch if resume_from is not None else None)
              if world.is_main else _NoWriter())

    def save(path: Path, **kwargs: Any) -> None:
        if world.is_main:
            save_checkpoint(path, net, **kwargs)

    def save_last() -> None:
        nonlocal last_good
        state = snapshot()
        save(ckpt_dir / "last.pt", keep_previous=True, **state)
        last_good = copy.deepcopy({"net_state": net.state_dict(), **state})

    stopped_early = False
    bar = tqdm(total=schedule.epochs, initial=prog.epoch, desc="meta-train", disable=not (progress and world.is_main),
               dynamic_ncols=True, mininterval=1.0)
    with _SignalTrap() as trap:
        while prog.epoch < schedule.epochs:
            epoch = prog.epoch
            horizon = schedule.horizon_at(epoch)
            t_start = time.perf_counter()
            seeds = torch.randint(0, SPLIT_OFFSETS["val"], (schedule.problems_per_epoch,), generator=seed_gen).tolist()
            problem = family.sample(world.share(seeds, "schedule.problems_per_epoch"), device)
            carry = start(net, problem)
            epoch_meta_loss, grad_norms, rolled_back = torch.zeros((), device=device), [], False
            while carry.step < horizon:
                n = min(schedule.unroll, horizon - carry.step)
                meta_loss, _, carry = unroll(
                    net, problem, carry, n, weights[carry.step : carry.step + n], schedule.second_derivatives
                )
                meta_opt.zero_grad(set_to_none=True)
                meta_loss.backward()
                (meta_loss,) = world.average_gradients(net.parameters(), meta_loss)
                max_norm = schedule.clip_grad_norm if schedule.clip_grad_norm is not None else math.inf
                grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
                if bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(meta_loss)):
                    meta_opt.step()
                    prog.consecutive_bad = 0
                    epoch_meta_loss += meta_loss.detach()
                    grad_norms.append(grad_norm.detach())
                    continue
                # a non-finite meta-loss or meta-gradient never reaches φ
                prog.skipped += 1
                prog.consecutive_bad += 1
                writer.add_scalar("guard/skipped_steps", prog.skipped, epoch)
                if prog.consecutive_bad >= guard.max_consecutive:
                    if prog.rollbacks >= guard.max_rollbacks:
                        save(ckpt_dir / "diverged.pt", **snapshot())
                        raise TrainingDiverged(
                            f"meta-training diverged: {prog.consecutive_bad} non-finite meta-steps in a row at epoch "
                            f"{epoch} after {prog.rollbacks} rollbacks (guard.max_rollbacks={guard.max_rollbacks}). "
                            f"The last good checkpoint is {ckpt_dir / 'last.pt'}; lower schedule.meta_lr or "
                            "schedule.clip_grad_norm, or check the optimizee for NaNs."
                        )
                    rollbacks, skipped = prog.rollbacks + 1, prog.skipped
                    restore(last_good)
                    prog.rollbacks, prog.skipped, prog.consecutive_bad = rollbacks, skipped, 0
                    prog.lr_scale *= guard.lr_factor
                    for group in meta_opt.param_groups:
                        group["lr"] *= guard.lr_factor
                    writer.add_scalar("guard/rollbacks", prog.rollbacks, epoch)
                    if world.is_main:
                        tqdm.write(f"l2o-train: {guard.max_consecutive} non-finite meta-steps in a row at epoch {epoch}: "
                                   f"rolled back to epoch {prog.epoch}, meta-lr now {meta_opt.param_groups[0]['lr']:.3g}")
                    rolled_back = True
                    break
            if rolled_back:
                bar.n = prog.epoch
                continue
            lr_sched.step()
            seconds = time.perf_counter() - t_start

            writer.add_scalar("meta/loss", float(epoch_meta_loss), epoch)
            if grad_norms:
                writer.add_scalar("meta/grad_norm", float(torch.stack(grad_norms).mean()), epoch)
            writer.add_scalar("meta/lr", meta_opt.param_groups[0]["lr"], epoch)
            writer.add_scalar("meta/skipped_steps", prog.skipped, epoch)
            final_sum = float(world.sum(carry.loss.sum().reshape(1)))
            writer.add_scalar("train/final_loss", mean_or_inf(final_sum, schedule.problems_per_epoch), epoch)
            writer.add_scalar("meta/horizon", horizon, epoch)
            writer.add_scalar("perf/optimizee_steps_per_s", schedule.problems_per_epoch * horizon / seconds, epoch)
            bar.update(1)
            bar.set_postfix(meta_loss=f"{float(epoch_meta_loss):.4g}", best_val=f"{prog.best_val:.4g}")
            prog.epoch = epoch + 1

            last_epoch = prog.epoch == schedule.epochs
            validated = False
            if prog.epoch % schedule.val_every == 0 or last_epoch:
                validated = True
                val_at = validate(net, val_problem, schedule.val_horizons, world, schedule.num_val)
                val = sum(val_at.values()) / len(val_at)
                writer.add_scalar("val/final_loss", val, epoch)
                if len(val_at) > 1:
                    for h, v in val_at.items():
                        writer.add_scalar(f"val/loss_at_{h}", v, epoch)
                if val < prog.best_val:
                    prog.best_val, prog.best_epoch, prog.checks_since_best = val, epoch, 0
                    save(ckpt_dir / "best.pt", **dict(snapshot(), val_loss=val))
                else:
                    prog.checks_since_best += 1
                if schedule.patience is not None and prog.checks_since_best >= schedule.patience:
                    stopped_early = True
            # every process stops at the same epoch when any of them got a signal
            signalled = world.any(trap.signum is not None, device)
            if validated or prog.epoch % checkpoint_every == 0 or last_epoch or stopped_early or signalled:
                save_last()
            if signalled:
                writer.close()
                bar.close()
                raise Interrupted(trap.signum or signal.SIGTERM, prog.epoch)
            if stopped_early:
                break
    bar.close()
    writer.close()
    if hparams and world.is_main:
        write_hparams(run_dir / "tb", hparams, {"hparam/best_val": prog.best_val, "hparam/best_epoch": prog.best_epoch,
                                               "hparam/epochs_run": prog.epoch})
    return {
        "best_val": prog.best_val,
        "best_epoch": prog.best_epoch,
        "epochs_run": prog.epoch,
        "stopped_early": stopped_early,
        "skipped_steps": prog.skipped,
        "rollbacks": prog.rollbacks,
        "checkpoint": str(ckpt_dir / ("best.pt" if prog.best_epoch >= 0 else "last.pt")),
        "tensorboard": str(run_dir / "tb"),
    }
