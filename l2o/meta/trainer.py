"""Meta-training: the loop reads top to bottom in `meta_train`.

    sample problems -> the gradient estimator's truncations, one guarded meta-step after each
        -> log -> validate (the truncation schedule may move on) -> checkpoint

How a meta-gradient is estimated (truncated BPTT, imitation of a teacher, ...) is the estimator's
business (`l2o.meta.bptt`), how long each epoch's run is and when to move on the truncation
schedule's (`l2o.meta.truncation`, which keeps its own state), random rescaling the training
family's (`l2o.optimizees.scaling`). Every epoch boundary is a consistent state (φ, the
meta-optimizer's moments, the lr schedule, the task sampler's generator, the truncation
schedule's state, the counters); `last.pt` holds one, so a run killed at any point and resumed
replays the lost epochs bit for bit.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from l2o.checkpoint import CHECKPOINT_DIR, load_checkpoint, restore_training, save_checkpoint, training_fields
from l2o.errors import L2OError
from l2o.meta.distributed import World
from l2o.meta.guard import ROLLBACK, SKIP, NanGuard, TrainingDiverged
from l2o.meta.interrupt import Interrupted, SignalTrap
from l2o.meta.logging import MetaLogger
from l2o.meta.schedule import Schedule
from l2o.meta.truncation import ADVANCE, STOP
from l2o.meta.unroll import Carry, rollout
from l2o.optimizees.base import SPLIT_OFFSETS, Family, Problem, split_seeds
from l2o.optimizers.base import OptimizerNet
from l2o.utils import write_hparams

__all__ = ["Interrupted", "NanGuard", "TrainingDiverged", "meta_gradient", "meta_train", "validate"]


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
    seconds: float = 0.0  # training wall time over every session of the run (resumes add up)
    advance_pending: bool = False  # the curriculum moved on at the last epoch: the new stage starts if the run goes on


@dataclass
class Epoch:
    """What one epoch's meta-steps left: the meta-loss summed over truncations, its tag, the
    gradient norms and where the optimization run ended."""

    meta_loss: torch.Tensor
    tag: str
    grad_norms: list[torch.Tensor]
    carry: Carry


def mean_or_inf(total: float, count: int) -> float:
    """A mean over problems from their sum; a non-finite sum scores +inf (a diverged φ is worst)."""
    return total / count if math.isfinite(total) else math.inf


def validate(net: OptimizerNet, val_problems: Problem | list[Problem], horizons: list[int], world: World = World(),
             num_val: int | None = None, window: int = 1) -> dict[int, float]:
    """Mean loss f(θ_T) of the frozen optimizer on the fixed validation problems at each T in
    `horizons` (one rollout to the longest); a non-finite loss anywhere scores +inf. `window` > 1
    scores the mean over steps T − window + 1 .. T instead: on minibatch problems one step's loss
    is mostly the noise of one minibatch, and a few validation problems cannot average it out.
    Under several processes each holds some of the `num_val` problems and the sums are all-reduced.
    A list of problems (a mix of optimizees, one batch per member) scores the mean over members."""
    problems = val_problems if isinstance(val_problems, list) else [val_problems]
    totals = dict.fromkeys(horizons, 0.0)
    for problem in problems:
        losses = rollout(net, problem, max(horizons))[0]
        at = torch.stack([losses[max(0, h - window + 1): h + 1].mean(dim=0) for h in horizons])
        sums = world.sum(at.sum(dim=1))
        n = num_val or losses.shape[1]
        for h, s in zip(horizons, sums):
            totals[h] += mean_or_inf(float(s), n) / len(problems)
    return totals


def meta_gradient(net: OptimizerNet, meta_opt: torch.optim.Optimizer, meta_loss: torch.Tensor,
                  clip_grad_norm: float | None, world: World = World()) -> tuple[torch.Tensor, torch.Tensor]:
    """φ's gradient of one truncation's meta-loss (φ's old gradients cleared first), averaged over
    processes and clipped to `clip_grad_norm` (None: not clipped): what a meta-step applies.
    Returns the (averaged) meta-loss and the gradient norm before clipping."""
    meta_opt.zero_grad(set_to_none=True)
    meta_loss.backward()
    (meta_loss,) = world.average_gradients(net.parameters(), meta_loss)
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), clip_grad_norm if clip_grad_norm is not None else math.inf)
    return meta_loss, grad_norm


class _Run:
    """φ, the meta-optimizer, its lr schedule, the seed generator, the truncation schedule's state
    and the progress record (what a checkpoint captures and a rollback or resume restores), and the
    steps of an epoch that act on them."""

    def __init__(self, net: OptimizerNet, schedule: Schedule, seed: int, run_dir: Path, extra: dict[str, Any],
                 world: World, guard: NanGuard | None = None):
        self.net, self.schedule, self.world, self.guard = net, schedule, world, guard or NanGuard()
        self.ckpt_dir = run_dir / CHECKPOINT_DIR
        self.meta_opt, self.lr_sched = schedule.make_meta_optimizer(net.parameters())
        self.seed_gen = torch.Generator().manual_seed(seed)
        self.extra = dict(extra, schedule=schedule.to_dict())
        self.prog = Progress()
        self.last_good: dict[str, Any] | None = None

    # --- what a checkpoint holds ------------------------------------------------------------
    def fields(self) -> dict[str, Any]:
        training = training_fields(asdict(self.prog), self.meta_opt, self.lr_sched, self.seed_gen)
        return dict(self.extra, training=dict(training, truncation=self.schedule.truncation.state_dict()))

    def restore(self, ckpt: dict[str, Any]) -> None:
        progress = restore_training(ckpt, self.net, self.meta_opt, self.lr_sched, self.seed_gen)
        truncation = ckpt["training"].get("truncation")
        if truncation is None and "stage" in progress:  # written before schedules kept their own state
            truncation = {"stage": progress["stage"], "stage_start": progress["stage_start"],
                          "checks": progress["stage_checks"], "checks_since_best": progress["checks_since_best"],
                          "improved": progress["stage_improved"]}
        if truncation:
            self.schedule.truncation.load_state_dict(truncation)
        self.prog = Progress(**{f.name: progress[f.name] for f in fields(Progress) if f.name in progress})

    def remember(self) -> None:
        """Keep the current state in memory as the rollback target."""
        self.last_good = copy.deepcopy({"optimizer_state": self.net.state_dict(), **self.fields()})

    def save(self, name: str, keep_previous: bool = False, **extra: Any) -> None:
        if self.world.is_main:
            save_checkpoint(self.ckpt_dir / name, self.net, keep_previous=keep_previous, **self.fields(), **extra)

    def save_last(self) -> None:
        self.save("last.pt", keep_previous=True)
        self.remember()

    def rollback(self, log: MetaLogger, epoch: int) -> None:
        """Back to the last good state with the meta-lr × the guard's factor; its counters survive."""
        rollbacks, skipped = self.prog.rollbacks + 1, self.prog.skipped
        self.restore(self.last_good)
        self.prog.rollbacks, self.prog.skipped, self.prog.consecutive_bad = rollbacks, skipped, 0
        self.prog.lr_scale *= self.guard.lr_factor
        for group in self.meta_opt.param_groups:
            group["lr"] *= self.guard.lr_factor
        log.scalars(epoch, {"guard/skipped_steps": skipped, "guard/rollbacks": rollbacks})
        log.message(f"l2o-train: {self.guard.max_consecutive} non-finite meta-steps in a row at epoch {epoch}: "
                    f"rolled back to epoch {self.prog.epoch}, meta-lr now {self.meta_opt.param_groups[0]['lr']:.3g}")
        log.bar.n = self.prog.epoch

    # --- one epoch -----------------------------------------------------------------------------
    def sample(self, family: Family, device: torch.device) -> tuple[Problem, int]:
        """This epoch's training problems (seeds from the checkpointed generator) and horizon."""
        seeds = torch.randint(0, SPLIT_OFFSETS["val"], (self.schedule.problems_per_epoch,), generator=self.seed_gen)
        horizon = self.schedule.horizon_at(self.prog.epoch, self.seed_gen)
        return family.sample(self.world.share(seeds.tolist(), "schedule.problems_per_epoch"), device), horizon

    def episode(self, problem: Problem, horizon: int, log: MetaLogger) -> Epoch | None:
        """One meta-step after every truncation the estimator yields; None when the guard rolled back."""
        epoch, total, norms, tag, carry = self.prog.epoch, None, [], "meta/loss", None
        estimator = self.schedule.gradient_estimator()
        for item in estimator.truncations(self.net, problem, horizon, self.seed_gen, self.schedule.truncation.stage):
            action, meta_loss, grad_norm = self.meta_step(item.value)
            tag, carry = item.tag, item.carry
            if action == SKIP:
                log.scalars(epoch, {"guard/skipped_steps": self.prog.skipped})
            elif action == ROLLBACK:
                self.rollback(log, epoch)
                return None
            else:
                total = meta_loss if total is None else total + meta_loss
                norms.append(grad_norm)
        self.lr_sched.step()
        return Epoch(total if total is not None else torch.zeros(()), tag, norms, carry)

    def meta_step(self, meta_loss: torch.Tensor) -> tuple[str, torch.Tensor, torch.Tensor]:
        """`meta_gradient`, then the meta-optimizer's step unless the guard says otherwise.
        Returns (action, meta-loss, gradient norm)."""
        meta_loss, grad_norm = meta_gradient(self.net, self.meta_opt, meta_loss, self.schedule.clip_grad_norm, self.world)
        try:
            action = self.guard.judge(bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(meta_loss)), self.prog)
        except TrainingDiverged as exc:
            self.save("diverged.pt")
            raise TrainingDiverged(f"{exc} The last good checkpoint is {self.ckpt_dir / 'last.pt'}; lower "
                                   "schedule.meta_lr or schedule.clip_grad_norm, or check the optimizee for NaNs.") from None
        if action not in (SKIP, ROLLBACK):
            self.meta_opt.step()
        return action, meta_loss.detach(), grad_norm.detach()

    def log_epoch(self, log: MetaLogger, done: Epoch, problem: Problem, horizon: int, seconds: float) -> None:
        schedule, prog = self.schedule, self.prog
        final_sum = float(self.world.sum(problem.reported_loss(done.carry.loss).sum().reshape(1)))
        log.scalars(prog.epoch, {
            done.tag: float(done.meta_loss),
            **({"meta/grad_norm": float(torch.stack(done.grad_norms).mean())} if done.grad_norms else {}),
            "meta/lr": self.meta_opt.param_groups[0]["lr"],
            "meta/skipped_steps": prog.skipped,
            "train/final_loss": mean_or_inf(final_sum, schedule.problems_per_epoch),
            "meta/horizon": horizon,
            **({"meta/stage": schedule.truncation.stage} if schedule.num_stages > 1 else {}),
            "perf/optimizee_steps_per_s": schedule.problems_per_epoch * horizon / seconds,
        })
        log.epoch_done(float(done.meta_loss), prog.best_val)

    def validate(self, val_problems: Problem | list[Problem], log: MetaLogger) -> bool:
        """Score φ, keep it if best; the truncation schedule then stays, moves on or stops.
        Returns whether the run stops (patience, or the schedule's end)."""
        schedule, prog, epoch = self.schedule, self.prog, self.prog.epoch - 1
        val_at = validate(self.net, val_problems, schedule.val_horizons, self.world, schedule.num_val, schedule.val_window)
        val = sum(val_at.values()) / len(val_at)
        log.scalars(epoch, {"val/final_loss": val, **({f"val/loss_at_{h}": v for h, v in val_at.items()} if len(val_at) > 1 else {})})
        improved = val < prog.best_val
        if improved:
            prog.best_val, prog.best_epoch, prog.checks_since_best = val, epoch, 0
            self.save("best.pt", val_loss=val)
            if schedule.num_stages > 1:
                self.save(f"best_stage{schedule.truncation.stage}.pt", val_loss=val)
        else:
            prog.checks_since_best += 1
        if schedule.patience is not None and prog.checks_since_best >= schedule.patience:
            return True
        decision = schedule.truncation.observe(prog.epoch, improved)
        if decision == ADVANCE and prog.epoch >= schedule.epochs:
            # nothing is left to train at the new stage: keep best.pt scored as the run's stages scored it
            # (restoring and rescoring it would cost a validation at the next, longer horizon), and start
            # the stage only if a resume with more epochs goes on
            prog.advance_pending = True
            log.message(f"l2o-train: the curriculum moves on to stage {schedule.truncation.stage} at the last epoch; "
                        f"best.pt keeps its score ({prog.best_val:.4g}), and a resume with more epochs starts the stage")
        elif decision == ADVANCE:
            self.advance(val_problems, log)
        elif decision == STOP:
            log.message(f"l2o-train: curriculum done at epoch {prog.epoch}: {schedule.truncation.stop_reason()}; "
                        f"best.pt is the best φ (validation {prog.best_val:.4g})")
        return decision == STOP

    def advance(self, val_problems: Problem | list[Problem], log: MetaLogger) -> None:
        """The truncation schedule moved on: restore the best φ so far and rescore it at the new
        validation horizons, the bar the new stage must beat."""
        schedule, prog = self.schedule, self.prog
        self.world.barrier()  # best.pt is written by the main process
        self.net.load_state_dict(load_checkpoint(self.ckpt_dir / "best.pt")["optimizer_state"])
        val_at = validate(self.net, val_problems, schedule.val_horizons, self.world, schedule.num_val, schedule.val_window)
        prog.best_val, prog.checks_since_best = sum(val_at.values()) / len(val_at), 0
        self.save("best.pt", val_loss=prog.best_val)  # the same φ, scored by the new stage's yardstick
        log.message(f"l2o-train: curriculum stage {schedule.truncation.stage} from epoch {prog.epoch}: T = "
                    f"{schedule.horizon_at(prog.epoch)}, restored the best φ of the previous stage "
                    f"(validation at T = {schedule.val_horizons[0]}: {prog.best_val:.4g})")

    def result(self, stopped_early: bool, run_dir: Path) -> dict[str, Any]:
        prog = self.prog
        return {"best_val": prog.best_val, "best_epoch": prog.best_epoch, "epochs_run": prog.epoch,
                "stopped_early": stopped_early, "skipped_steps": prog.skipped, "rollbacks": prog.rollbacks,
                "train_seconds": round(prog.seconds, 1),
                "checkpoint": str(self.ckpt_dir / ("best.pt" if prog.best_epoch >= 0 else "last.pt")),
                "tensorboard": str(run_dir / "tb")}


def meta_train(net: OptimizerNet, family: Family, schedule: Schedule, *, device: torch.device, run_dir: str | Path,
               seed: int = 0, checkpoint_extra: dict[str, Any] | None = None, progress: bool = True,
               resume_from: dict[str, Any] | None = None, checkpoint_every: int = 10,
               nan_guard: NanGuard | None = None, world: World = World(),
               hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """Meta-train φ = net's parameters on problems of `family`; write TensorBoard scalars and
    best/last checkpoints into `run_dir`. `resume_from` (a loaded `last.pt`) continues a run exactly;
    under torchrun (`world`) each process runs its share of the meta-batch; `hparams` go to
    TensorBoard's HParams view with the run's final metrics."""
    run_dir, net = Path(run_dir), net.to(device)
    if schedule.num_val < world.size:
        raise L2OError(f"schedule.num_val={schedule.num_val} is smaller than the {world.size} processes; "
                       "every process needs a validation problem.")
    val_problems = family.validation_problems(split_seeds("val", schedule.num_val)[world.rank :: world.size], device)
    train_family = schedule.scaling.wrap(family) if schedule.scaling is not None else family
    run = _Run(net, schedule, seed, run_dir, checkpoint_extra or {}, world, nan_guard)
    if resume_from is not None:
        run.restore(resume_from)
    run.remember()
    log = MetaLogger(run_dir, schedule.epochs, run.prog.epoch, main=world.is_main, progress=progress,
                     purge_from=run.prog.epoch if resume_from is not None else None)
    stopped = False
    with SignalTrap() as trap:
        while run.prog.epoch < schedule.epochs and not stopped:
            t_start = time.perf_counter()
            if run.prog.advance_pending:  # resumed with more epochs after a move at the last one
                run.prog.advance_pending = False
                run.advance(val_problems, log)
            # 1. this epoch's problems and horizon
            problem, horizon = run.sample(train_family, device)
            # 2. the estimator's truncations, one guarded meta-step after each
            done = run.episode(problem, horizon, log)
            if done is None:  # rolled back to the last good state
                continue
            run.log_epoch(log, done, problem, horizon, time.perf_counter() - t_start)
            run.prog.epoch += 1
            # 3. validate, keep the best φ, let the truncation schedule move on
            last_epoch = run.prog.epoch == schedule.epochs
            validated = run.prog.epoch % schedule.val_every == 0 or last_epoch
            stopped = run.validate(val_problems, log) if validated else False
            run.prog.seconds += time.perf_counter() - t_start  # the epoch with its validation
            # 4. checkpoint; every process stops at the same epoch when any of them got a signal
            signalled = world.any(trap.signum is not None, device)
            if validated or run.prog.epoch % checkpoint_every == 0 or last_epoch or stopped or signalled:
                run.save_last()
            if signalled:
                log.close()
                raise Interrupted(trap.signum or 15, run.prog.epoch)
    log.close()
    if hparams and world.is_main:
        write_hparams(run_dir / "tb", hparams, {"hparam/best_val": run.prog.best_val,
                                               "hparam/best_epoch": run.prog.best_epoch, "hparam/epochs_run": run.prog.epoch})
    return run.result(stopped, run_dir)
