"""An evaluation sweep: the learned optimizer against learning-rate-tuned baselines."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from l2o.evaluation import report
from l2o.evaluation.runners import OptimizerFactory, run_learned, run_torch_optimizer
from l2o.evaluation.stats import Curve, diverged_mask, score
from l2o.optimizees.base import Family, split_seeds
from l2o.optimizers.base import OptimizerNet


def tune_lr(factory: OptimizerFactory, problem, steps: int, grid: Sequence[float], metric: str,
            divergence_factor: float) -> tuple[float | None, dict[str, float]]:
    """The grid value with the best mean `metric` (final loss, or sum of losses) on `problem`."""
    scores = {}
    for lr in grid:
        scores[f"{lr:.6g}"] = score(run_torch_optimizer(factory, problem, steps, lr)[0], metric, divergence_factor)
    best = min(scores, key=scores.get)
    return (float(best) if math.isfinite(scores[best]) else None), scores


def evaluate(
    family: Family,
    *,
    learned: dict[str, OptimizerNet],
    baselines: dict[str, OptimizerFactory],
    steps: int,
    num_test: int,
    lr_grid: Sequence[float] | None,
    tune_metric: str = "final",
    num_tune: int = 100,
    divergence_factor: float = 10.0,
    device: torch.device,
    out_dir: str | Path,
    optimizee_name: str,
    progress: bool = True,
) -> tuple[dict[str, Any], str]:
    """Tune each baseline's lr on the validation problems, then run everything on the
    test problems (seeds disjoint from training and validation); write all result files."""
    test_problem = family.sample(split_seeds("test", num_test), device)
    tune_problem = family.sample(split_seeds("val", num_tune), device) if lr_grid else None
    curves: dict[str, Curve] = {}
    lrs: dict[str, float | None] = {}
    extra: dict[str, dict[str, float]] = {}
    tuning: dict[str, Any] = {"metric": tune_metric, "grid": list(lr_grid or []), "scores": {}, "selected": {}}
    jobs = list(learned) + list(baselines)
    bar = tqdm(jobs, desc="evaluate", disable=not progress, dynamic_ncols=True, mininterval=1.0)
    for name in bar:
        bar.set_postfix_str(name)
        if name in learned:
            net = learned[name].to(device)
            losses, final_params = run_learned(net, test_problem, steps)
            lrs[name] = None
        else:
            factory = baselines[name]
            lr = None
            if lr_grid:
                lr, tuning["scores"][name] = tune_lr(factory, tune_problem, steps, lr_grid, tune_metric, divergence_factor)
                tuning["selected"][name] = lr
                if lr is None:  # every grid value diverged: report the smallest, flagged as diverged
                    lr = min(lr_grid)
            losses, final_params = run_torch_optimizer(factory, test_problem, steps, lr)
            lrs[name] = lr if lr is not None else factory.keywords.get("lr") if hasattr(factory, "keywords") else None
        curves[name] = Curve.from_losses(losses, divergence_factor)
        if hasattr(test_problem, "test_metrics"):  # e.g. MNIST: loss and accuracy on the full test set
            alive = ~diverged_mask(losses, divergence_factor)[-1].to(final_params.device)
            metrics = test_problem.test_metrics(final_params[alive]) if alive.any() else {}
            extra[name] = {k: float(v.double().mean()) for k, v in metrics.items()}
    summary = report.summarize(curves, lrs, optimizee_name, steps, num_test)
    for name, values in extra.items():
        summary["optimizers"][name].update(values)
    table = report.write_all(Path(out_dir), curves, lrs, summary, list(learned), tuning)
    return summary, table
