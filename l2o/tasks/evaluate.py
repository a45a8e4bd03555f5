"""`l2o-eval task=NAME`: learned optimizers on a real training task, through `LearnedOptimizer`
exactly as a user would run them (lr 1.0, untuned), against torch.optim baselines each tuned on the
task (on validation seeds, over the protocol's lr grid); every optimizer then trains the task from
each test seed. Written as `l2o-eval` writes a problem family's evaluation (summary, curves, plot,
tuning, resumable units), with each optimizer's test loss and accuracy, its step time and its
state per parameter beside the training loss."""
from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from l2o.evaluation import report
from l2o.evaluation.evaluate import Partial, check_baselines_source, combine, reuse_baselines
from l2o.evaluation.protocol import Protocol
from l2o.evaluation.runners import OptimizerFactory
from l2o.evaluation.stats import score
from l2o.optimizees.base import split_seeds
from l2o.optimizers.base import OptimizerNet
from l2o.optimizers.learned import LearnedOptimizer
from l2o.tasks.base import MakeOptimizer, Task, train


def learned_maker(net: OptimizerNet) -> MakeOptimizer:
    return lambda groups, model: LearnedOptimizer(groups, net=copy.deepcopy(net), model=model)


def baseline_maker(factory: OptimizerFactory) -> MakeOptimizer:
    return lambda groups, model: factory(groups)   # each group carries its lr (and weight decay)


def tune(task: Task, baselines: dict[str, OptimizerFactory], protocol: Protocol, store: Partial,
         progress: bool = True) -> dict[str, float | None]:
    """Each baseline's lr: the grid value with the best score over the validation seeds (saved as
    soon as each is tuned); without a grid its configured lr."""
    t, lrs = protocol.tuning, {}
    for name, factory in baselines.items():
        if not t.grid:
            lrs[name] = factory.keywords.get("lr") if isinstance(factory, functools.partial) else None
            continue
        if name not in store.tuning["selected"]:
            scores = {}
            for lr in tqdm(t.grid, desc=f"tune {name}", leave=False, disable=not progress):
                runs = [train(task, baseline_maker(factory), seed, lr, t.steps, protocol.divergence_factor).losses
                        for seed in split_seeds("val", t.num_problems)]
                scores[f"{lr:.6g}"] = score(torch.stack(runs, 1), t.metric, protocol.divergence_factor)
            best = min(scores, key=scores.get)
            store.tuning["selected"][name] = float(best) if math.isfinite(scores[best]) else None
            store.tuning["scores"][name] = scores
            store.save_tuning(store.tuning)
        lrs[name] = store.tuning["selected"][name] if store.tuning["selected"][name] is not None else min(t.grid)
    return lrs


def evaluate_task(task: Task, *, learned: dict[str, OptimizerNet], baselines: dict[str, OptimizerFactory],
                  protocol: Protocol, out_dir: str | Path, task_name: str, progress: bool = True,
                  meta: dict[str, Any] | None = None, resume: bool = False,
                  baselines_from: str | Path | None = None) -> tuple[dict[str, Any], str]:
    """Tune the baselines, then train the task with every optimizer from every test seed (one saved,
    resumable unit each); write the result files. Returns the summary and its table. `baselines_from`:
    an earlier evaluation of the same task and settings, whose baselines' tuning and runs are reused."""
    out, jobs = Path(out_dir), list(learned) + list(baselines)
    settings = {"task": task_name, **protocol.record(), "optimizers": jobs, **(meta or {})}
    if baselines_from is not None:
        check_baselines_source(Path(baselines_from), settings)
    store = Partial(out / "partial", settings, resume, protocol.tuning)
    if baselines_from is not None:
        reuse_baselines(Path(baselines_from), store, list(baselines), protocol.num_test, bool(protocol.tuning.grid))
    lrs = {**dict.fromkeys(learned), **tune(task, baselines, protocol, store, progress)}
    makers = {**{n: learned_maker(net) for n, net in learned.items()}, **{n: baseline_maker(f) for n, f in baselines.items()}}
    seeds = split_seeds("test", protocol.num_test)
    units: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    bar = tqdm(total=len(jobs) * len(seeds), desc=f"{task_name}", disable=not progress)
    for name in jobs:
        for k, seed in enumerate(seeds):
            unit = store.load(name, k)
            if unit is None:
                run = train(task, makers[name], seed, lrs[name] if lrs[name] is not None else 1.0, protocol.steps,
                            protocol.divergence_factor)
                metrics = {**run.metrics, "step_ms": run.step_ms, "state_bytes_per_param": run.state_bytes_per_param}
                unit = {"losses": run.losses.unsqueeze(1), "metrics": {m: torch.tensor([v], dtype=torch.float64) for m, v in metrics.items()}}
                store.save(name, k, unit)
                store.unit_done(name, k)
            units[name].append(unit)
            bar.update(1)
    bar.close()
    curves, extra = {}, {}
    for name in jobs:
        curves[name], extra[name] = combine(units[name], protocol.divergence_factor)
    summary = report.summarize(curves, lrs, task_name, protocol.steps, protocol.num_test)
    summary["task_description"] = task.description
    for name, values in extra.items():
        summary["optimizers"][name].update(values)
    return summary, report.write_all(out, curves, lrs, summary, list(learned), store.tuning)
