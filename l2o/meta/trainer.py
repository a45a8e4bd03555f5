"""Meta-training by truncated BPTT: the whole loop, in one place."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from l2o.checkpoint import CHECKPOINT_DIR, save_checkpoint
from l2o.meta.schedule import Schedule
from l2o.meta.unroll import rollout, start, unroll
from l2o.optimizees.base import SPLIT_OFFSETS, Family, split_seeds
from l2o.optimizers.lstm import CoordinatewiseLSTM


def finite_mean(x: torch.Tensor) -> float:
    """Mean over problems; a non-finite entry makes the whole score +inf (a diverged φ is worst)."""
    return float(x.mean()) if bool(torch.isfinite(x).all()) else math.inf




def validate(net: CoordinatewiseLSTM, val_problem, horizon: int) -> float:
    """Mean final loss f(θ_T) of the frozen optimizer on the fixed validation problems."""
    return finite_mean(rollout(net, val_problem, horizon)[-1])


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
) -> dict[str, Any]:
    """Meta-train φ = net's parameters; write TensorBoard scalars and best/last checkpoints.

    Each epoch draws `problems_per_epoch` fresh training problems (seeds from a generator
    seeded with `seed`), runs them for `horizon` steps in unrolls of `unroll` steps and
    takes one Adam step on φ after each unroll, carrying θ and the LSTM state, detached,
    into the next unroll. Every `val_every` epochs φ is scored on fixed validation
    problems; the best φ by final validation loss is kept.
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    net.to(device)
    meta_opt = torch.optim.Adam(net.parameters(), lr=schedule.meta_lr)
    lr_sched = torch.optim.lr_scheduler.ExponentialLR(meta_opt, gamma=schedule.meta_lr_decay)
    weights = schedule.step_weights().to(device)
    val_problem = family.sample(split_seeds("val", schedule.num_val), device)
    seed_gen = torch.Generator().manual_seed(seed)
    writer = SummaryWriter(str(run_dir / "tb"))
    extra = dict(checkpoint_extra or {})
    extra["schedule"] = schedule.to_dict()

    best_val, best_epoch, checks_since_best, skipped = math.inf, -1, 0, 0
    stopped_early = False
    bar = tqdm(range(schedule.epochs), desc="meta-train", disable=not progress, dynamic_ncols=True, mininterval=1.0)
    for epoch in bar:
        t_start = time.perf_counter()
        seeds = torch.randint(0, SPLIT_OFFSETS["val"], (schedule.problems_per_epoch,), generator=seed_gen).tolist()
        problem = family.sample(seeds, device)
        carry = start(net, problem)
        epoch_meta_loss, grad_norms = torch.zeros((), device=device), []
        while carry.step < schedule.horizon:
            n = min(schedule.unroll, schedule.horizon - carry.step)
            meta_loss, _, carry = unroll(
                net, problem, carry, n, weights[carry.step : carry.step + n], schedule.second_derivatives
            )
            meta_opt.zero_grad(set_to_none=True)
            meta_loss.backward()
            max_norm = schedule.clip_grad_norm if schedule.clip_grad_norm is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
            if torch.isfinite(grad_norm) and torch.isfinite(meta_loss):
                meta_opt.step()
            else:  # a non-finite meta-gradient never reaches φ
                skipped += 1
            epoch_meta_loss += meta_loss.detach()
            grad_norms.append(grad_norm.detach())
        lr_sched.step()
        seconds = time.perf_counter() - t_start

        final_loss = finite_mean(carry.loss)
        writer.add_scalar("meta/loss", float(epoch_meta_loss), epoch)
        writer.add_scalar("meta/grad_norm", float(torch.stack(grad_norms).mean()), epoch)
        writer.add_scalar("meta/lr", meta_opt.param_groups[0]["lr"], epoch)
        writer.add_scalar("meta/skipped_steps", skipped, epoch)
        writer.add_scalar("train/final_loss", final_loss, epoch)
        writer.add_scalar("perf/optimizee_steps_per_s", problem.num_problems * schedule.horizon / seconds, epoch)
        bar.set_postfix(meta_loss=f"{float(epoch_meta_loss):.4g}", best_val=f"{best_val:.4g}")

        last_epoch = epoch == schedule.epochs - 1
        if (epoch + 1) % schedule.val_every == 0 or last_epoch:
            val = validate(net, val_problem, schedule.horizon)
            writer.add_scalar("val/final_loss", val, epoch)
            state = dict(extra, epoch=epoch, best_val=min(val, best_val), meta_opt=meta_opt.state_dict())
            if val < best_val:
                best_val, best_epoch, checks_since_best = val, epoch, 0
                save_checkpoint(ckpt_dir / "best.pt", net, **dict(state, val_loss=val))
            else:
                checks_since_best += 1
            save_checkpoint(ckpt_dir / "last.pt", net, **dict(state, val_loss=val))
            if schedule.patience is not None and checks_since_best >= schedule.patience:
                stopped_early = True
                break
    bar.close()
    writer.close()
    return {
        "best_val": best_val,
        "best_epoch": best_epoch,
        "epochs_run": epoch + 1,
        "stopped_early": stopped_early,
        "skipped_steps": skipped,
        "checkpoint": str(ckpt_dir / ("best.pt" if best_epoch >= 0 else "last.pt")),
        "tensorboard": str(run_dir / "tb"),
    }
