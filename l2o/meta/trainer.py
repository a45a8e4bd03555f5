"""Meta-training by truncated BPTT: the loop reads top to bottom in `meta_train`.

    sample problems (rescaled?) -> unroll (truncation schedule; or imitate a teacher)
        -> meta-objective -> meta-optimizer step -> guard / validate (next curriculum stage?)
        / checkpoint / log

Every epoch boundary is a consistent state (φ, the meta-optimizer's moments, the lr schedule,
the task sampler's generator, the counters); `last.pt` holds one, so a run killed at any
point and resumed replays the lost epochs bit for bit.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from l2o.checkpoint import CHECKPOINT_DIR, load_checkpoint, restore_training, save_checkpoint, training_fields
from l2o.errors import L2OError
from l2o.meta.distributed import World
from l2o.meta.guard import ROLLBACK, SKIP, NanGuard, TrainingDiverged
from l2o.meta.imitation import imitate
from l2o.meta.interrupt import Interrupted, SignalTrap
from l2o.meta.logging import MetaLogger
from l2o.meta.schedule import Schedule
from l2o.meta.truncation import ADVANCE, STOP
from l2o.meta.unroll import rollout, start, unroll
from l2o.optimizees.base import SPLIT_OFFSETS, Family, Problem, split_seeds
from l2o.optimizers.base import OptimizerNet
from l2o.utils import write_hparams

__all__ = ["Interrupted", "NanGuard", "TrainingDiverged", "meta_train", "validate"]


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
    stage: int = 0  # curriculum stage (truncation=adaptive)
    stage_improved: bool = False  # whether a check of this stage beat the φ it started from
    stage_start: int = 0  # the epoch the current stage began
    stage_checks: int = 0  # validation checks in the current stage
    seconds: float = 0.0  # training wall time over every session of the run (resumes add up)


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


class _Run:
    """φ, the meta-optimizer, its lr schedule, the seed generator and the progress record:
    what a checkpoint captures and a rollback or resume restores."""

    def __init__(self, net: OptimizerNet, schedule: Schedule, seed: int, run_dir: Path, extra: dict[str, Any],
                 world: World):
        self.net, self.world, self.ckpt_dir = net, world, run_dir / CHECKPOINT_DIR
        self.meta_opt, self.lr_sched = schedule.make_meta_optimizer(net.parameters())
        self.seed_gen = torch.Generator().manual_seed(seed)
        self.extra = dict(extra, schedule=schedule.to_dict())
        self.prog = Progress()
        self.last_good: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        return dict(self.extra, training=training_fields(asdict(self.prog), self.meta_opt, self.lr_sched, self.seed_gen))

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.prog = Progress(**restore_training(ckpt, self.net, self.meta_opt, self.lr_sched, self.seed_gen))

    def remember(self) -> None:
        """Keep the current state in memory as the rollback target."""
        self.last_good = copy.deepcopy({"optimizer_state": self.net.state_dict(), **self.fields()})

    def save(self, name: str, keep_previous: bool = False, **fields: Any) -> None:
        if self.world.is_main:
            save_checkpoint(self.ckpt_dir / name, self.net, keep_previous=keep_previous, **self.fields(), **fields)

    def save_last(self) -> None:
        self.save("last.pt", keep_previous=True)
        self.remember()

    def rollback(self, lr_factor: float) -> None:
        """Back to the last good state with the meta-lr × `lr_factor`; the guard's counters survive."""
        rollbacks, skipped = self.prog.rollbacks + 1, self.prog.skipped
        self.restore(self.last_good)
        self.prog.rollbacks, self.prog.skipped, self.prog.consecutive_bad = rollbacks, skipped, 0
        self.prog.lr_scale *= lr_factor
        for group in self.meta_opt.param_groups:
            group["lr"] *= lr_factor


def meta_step(run: _Run, meta_loss: torch.Tensor, schedule: Schedule, guard: NanGuard) -> tuple[str, torch.Tensor, torch.Tensor]:
    """Back-propagate one unroll's meta-loss into φ, average it over processes, clip, and step
    unless the guard says otherwise. Returns (action, meta-loss, gradient norm)."""
    run.meta_opt.zero_grad(set_to_none=True)
    meta_loss.backward()
    (meta_loss,) = run.world.average_gradients(run.net.parameters(), meta_loss)
    max_norm = schedule.clip_grad_norm if schedule.clip_grad_norm is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(run.net.parameters(), max_norm)
    action = guard.judge(bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(meta_loss)), run.prog)
    if action not in (SKIP, ROLLBACK):
        run.meta_opt.step()
    return action, meta_loss.detach(), grad_norm.detach()


def next_stage(run: _Run, schedule: Schedule, val_problem: Problem | list[Problem], log: MetaLogger, epoch: int) -> str:
    """The adaptive curriculum's move after a validation check. ADVANCE restores the stage's best
    φ (best.pt), switches to the next horizon and re-scores that φ at the new stage's validation
    horizon: the bar the new stage must beat. Returns what the curriculum decided."""
    prog = run.prog
    decision = schedule.truncation.decide(prog.stage, prog.checks_since_best, prog.stage_improved,
                                          prog.epoch - prog.stage_start, prog.stage_checks)
    if decision == ADVANCE:
        run.world.barrier()  # best.pt is written by the main process
        run.net.load_state_dict(load_checkpoint(run.ckpt_dir / "best.pt")["optimizer_state"])
        prog.stage, prog.checks_since_best, prog.stage_improved, prog.stage_start = prog.stage + 1, 0, False, prog.epoch
        prog.stage_checks = 0
        val_at = validate(run.net, val_problem, schedule.val_horizons_at(prog.stage), run.world, schedule.num_val,
                          schedule.val_window)
        prog.best_val = sum(val_at.values()) / len(val_at)
        run.save("best.pt", val_loss=prog.best_val)  # the same φ, scored by the new stage's yardstick
        log.message(f"l2o-train: curriculum stage {prog.stage} from epoch {epoch + 1}: T = "
                    f"{schedule.horizon_at(epoch, None, prog.stage)}, restored the best φ of the previous stage "
                    f"(validation at T = {schedule.val_horizons_at(prog.stage)[0]}: {prog.best_val:.4g})")
    elif decision == STOP:
        why = "its last stage stopped improving" if prog.stage_improved else f"stage {prog.stage} never improved"
        log.message(f"l2o-train: curriculum done at epoch {epoch + 1}: {why}; best.pt is the best φ "
                    f"(validation {prog.best_val:.4g})")
    return decision


def meta_train(
    net: OptimizerNet,
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
    seeded with `seed`), runs them for the epoch's horizon (`schedule.truncation`) in unrolls
    of `unroll` steps and takes one meta-optimizer step on φ after each unroll
    (`schedule.objective` makes the meta-loss), carrying θ, the optimizer's and the
    optimizee's state, detached, into the next unroll. Every `val_every` epochs φ is scored
    on fixed validation problems; the best φ is kept (with `truncation=adaptive`, per
    curriculum stage, see `next_stage`). `schedule.scaling` rescales each training problem and
    `schedule.imitation` makes some epochs follow a teacher's trajectory. `resume_from` (a loaded `last.pt`)
    continues a run exactly where it left off. Under torchrun (`world`) each process runs its
    share of the meta-batch (see l2o.meta.distributed). `hparams`, when given, go to
    TensorBoard's HParams view with the run's final metrics.
    """
    guard = nan_guard or NanGuard()
    run_dir = Path(run_dir)
    net.to(device)
    if schedule.num_val < world.size:
        raise L2OError(f"schedule.num_val={schedule.num_val} is smaller than the {world.size} processes; "
                       "every process needs a validation problem.")
    val_seeds = split_seeds("val", schedule.num_val)[world.rank :: world.size]
    sample_val = getattr(family, "validation_problems", None)  # a mix: one batch per member
    val_problem = sample_val(val_seeds, device) if sample_val else family.sample(val_seeds, device)
    run = _Run(net, schedule, seed, run_dir, checkpoint_extra or {}, world)
    if resume_from is not None:
        run.restore(resume_from)
    run.remember()
    log = MetaLogger(run_dir, schedule.epochs, run.prog.epoch, main=world.is_main, progress=progress,
                     purge_from=run.prog.epoch if resume_from is not None else None)

    stopped_early = False
    with SignalTrap() as trap:
        while run.prog.epoch < schedule.epochs:
            epoch, prog = run.prog.epoch, run.prog
            t_start = time.perf_counter()
            # 1. sample this epoch's problems (randomly rescaled, if set), horizon, and whether to imitate
            seeds = torch.randint(0, SPLIT_OFFSETS["val"], (schedule.problems_per_epoch,), generator=run.seed_gen).tolist()
            horizon = schedule.horizon_at(epoch, run.seed_gen, prog.stage)
            problem = family.sample(world.share(seeds, "schedule.problems_per_epoch"), device)
            if schedule.scaling is not None:
                problem = schedule.scaling.wrap(problem, run.seed_gen)
            imitating = schedule.imitation is not None and schedule.imitation.draw(run.seed_gen, prog.stage)
            step_loss = schedule.objective.step_loss(horizon, device)
            # 2. truncated unrolls, one meta-step after each (imitation: along the teacher's trajectory)
            carry = start(net, problem)
            teacher = schedule.imitation.teacher(carry.params) if imitating else None
            epoch_meta_loss, grad_norms, rolled_back = torch.zeros((), device=device), [], False
            while carry.step < horizon:
                n = min(schedule.unroll, horizon - carry.step)
                if teacher is not None:
                    meta_loss, _, carry = imitate(net, problem, carry, n, teacher, schedule.imitation.loss)
                else:
                    meta_loss, _, carry = unroll(net, problem, carry, n, step_loss, schedule.second_derivatives)
                try:
                    action, meta_loss, grad_norm = meta_step(run, meta_loss, schedule, guard)
                except TrainingDiverged as exc:
                    run.save("diverged.pt")
                    raise TrainingDiverged(f"{exc} The last good checkpoint is {run.ckpt_dir / 'last.pt'}; lower "
                                           "schedule.meta_lr or schedule.clip_grad_norm, or check the optimizee for NaNs.") from None
                if action == SKIP:
                    log.scalars(epoch, {"guard/skipped_steps": prog.skipped})
                elif action == ROLLBACK:
                    run.rollback(guard.lr_factor)
                    log.scalars(epoch, {"guard/skipped_steps": run.prog.skipped, "guard/rollbacks": run.prog.rollbacks})
                    log.message(f"l2o-train: {guard.max_consecutive} non-finite meta-steps in a row at epoch {epoch}: "
                                f"rolled back to epoch {run.prog.epoch}, meta-lr now {run.meta_opt.param_groups[0]['lr']:.3g}")
                    rolled_back = True
                    break
                else:
                    epoch_meta_loss += meta_loss
                    grad_norms.append(grad_norm)
            if rolled_back:
                log.bar.n = run.prog.epoch
                continue
            run.lr_sched.step()
            seconds = time.perf_counter() - t_start
            # 3. log the epoch
            final_sum = float(world.sum(problem.reported_loss(carry.loss).sum().reshape(1)))
            log.scalars(epoch, {
                ("meta/imitation_loss" if imitating else "meta/loss"): float(epoch_meta_loss),
                **({"meta/grad_norm": float(torch.stack(grad_norms).mean())} if grad_norms else {}),
                "meta/lr": run.meta_opt.param_groups[0]["lr"],
                "meta/skipped_steps": prog.skipped,
                "train/final_loss": mean_or_inf(final_sum, schedule.problems_per_epoch),
                "meta/horizon": horizon,
                **({"meta/stage": prog.stage} if schedule.num_stages > 1 else {}),
                "perf/optimizee_steps_per_s": schedule.problems_per_epoch * horizon / seconds,
            })
            log.epoch_done(float(epoch_meta_loss), prog.best_val)
            prog.epoch = epoch + 1
            # 4. validate, keep the best, checkpoint
            last_epoch = prog.epoch == schedule.epochs
            validated = prog.epoch % schedule.val_every == 0 or last_epoch
            if validated:
                val_at = validate(net, val_problem, schedule.val_horizons_at(prog.stage), world, schedule.num_val,
                              schedule.val_window)
                val = sum(val_at.values()) / len(val_at)
                prog.stage_checks += 1
                log.scalars(epoch, {"val/final_loss": val,
                                    **({f"val/loss_at_{h}": v for h, v in val_at.items()} if len(val_at) > 1 else {})})
                if val < prog.best_val:
                    prog.best_val, prog.best_epoch, prog.checks_since_best, prog.stage_improved = val, epoch, 0, True
                    run.save("best.pt", val_loss=val)
                    if schedule.num_stages > 1:
                        run.save(f"best_stage{prog.stage}.pt", val_loss=val)
                else:
                    prog.checks_since_best += 1
                stopped_early = schedule.patience is not None and prog.checks_since_best >= schedule.patience
                if schedule.num_stages > 1 and not stopped_early:
                    stopped_early = next_stage(run, schedule, val_problem, log, epoch) == STOP
            prog.seconds += time.perf_counter() - t_start  # the epoch with its validation
            # every process stops at the same epoch when any of them got a signal
            signalled = world.any(trap.signum is not None, device)
            if validated or prog.epoch % checkpoint_every == 0 or last_epoch or stopped_early or signalled:
                run.save_last()
            if signalled:
                log.close()
                raise Interrupted(trap.signum or 15, prog.epoch)
            if stopped_early:
                break
    log.close()
    prog = run.prog
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
        "train_seconds": round(prog.seconds, 1),
        "checkpoint": str(run.ckpt_dir / ("best.pt" if prog.best_epoch >= 0 else "last.pt")),
        "tensorboard": str(run_dir / "tb"),
    }
