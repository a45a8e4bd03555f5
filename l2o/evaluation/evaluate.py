"""An evaluation sweep: the learned optimizer against learning-rate-tuned baselines.

Long evaluations (10,000 steps, many problems) run as units of work, one optimizer on one
chunk of test problems at a time, each saved under `<out>/partial/` as it finishes, with the
curves and plot rewritten from what is done so far. `resume=True` skips the saved units, so an
evaluation killed part-way (SIGKILL included) continues where it stopped and ends with the
same summary as an uninterrupted one.
"""
from __future__ import annotations

import functools
import json
import math
import multiprocessing
import pickle
import shutil
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from l2o.errors import L2OError
from l2o.evaluation import report
from l2o.evaluation.runners import OptimizerFactory, run_learned, run_torch_optimizer
from l2o.evaluation.stats import Curve, diverged_mask, score
from l2o.optimizees.base import Family, select_instances, split_seeds
from l2o.evaluation.protocol import Protocol
from l2o.optimizers.base import OptimizerNet, build_net
from l2o.utils import atomic_write, atomic_write_text, configure_torch

def tune_lr(factory: OptimizerFactory, problem, steps: int, grid: Sequence[float], metric: str,
            divergence_factor: float, tick: Callable[[], Any] = lambda: None) -> tuple[float | None, dict[str, float]]:
    """The grid value with the best mean `metric` (final loss, or sum of losses) on `problem`;
    `tick()` after each grid value (a progress bar's)."""
    scores = {}
    for lr in grid:
        scores[f"{lr:.6g}"] = score(run_torch_optimizer(factory, problem, steps, lr)[0], metric, divergence_factor)
        tick()
    best = min(scores, key=scores.get)
    return (float(best) if math.isfinite(scores[best]) else None), scores


def differing_keys(a: dict[str, Any], b: dict[str, Any], ignore: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The keys (outside `ignore`) whose values differ between two evaluations' meta.json."""
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))


class Partial:
    """The saved units of one evaluation directory: `meta.json` (what is being evaluated),
    `tuning.json` (each baseline's tuning, as it finishes) and `<optimizer>/<chunk>.pt`."""

    def __init__(self, root: Path, meta: dict[str, Any], resume: bool, tuning: Any):
        self.root = root
        meta_path = root / "meta.json"
        if meta_path.exists():
            if not resume:
                raise L2OError(f"{root.parent} already holds a (partial) evaluation; pass resume=true to continue it, "
                               "or choose another hydra.run.dir.")
            saved = json.loads(meta_path.read_text())
            # evaluations started before φ fingerprints were recorded resume as they were
            diff = differing_keys(saved, meta, ignore=set() if "fingerprints" in saved else {"fingerprints"})
            if diff:
                raise L2OError(f"resume=true, but {root.parent} was evaluated with different settings ({', '.join(diff)}); "
                               "use the same settings or another hydra.run.dir.")
        else:
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(meta_path, json.dumps(meta, indent=2))
        path = root / "tuning.json"
        self.tuning: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {
            "metric": tuning.metric, "grid": list(tuning.grid), "steps": tuning.steps, "num_problems": tuning.num_problems,
            "scores": {}, "selected": {}}

    def save_tuning(self, tuning: dict[str, Any]) -> None:
        atomic_write_text(self.root / "tuning.json", json.dumps(tuning, indent=2))

    def unit_done(self, name: str, chunk: int) -> None:
        """Called in the evaluating process once a unit's file is saved (by it or by a worker)."""

    def path(self, name: str, chunk: int) -> Path:
        return self.root / name / f"{chunk:05d}.pt"

    def load(self, name: str, chunk: int) -> dict[str, Any] | None:
        path = self.path(name, chunk)
        return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None

    def save(self, name: str, chunk: int, unit: dict[str, Any]) -> None:
        save_unit(self.path(name, chunk), unit)


def check_baselines_source(source: Path, settings: dict[str, Any]) -> None:
    """Refuse, before anything is written, an earlier evaluation whose settings differ (only the
    learned optimizers may)."""
    meta_path = source / "partial" / "meta.json"
    if not meta_path.is_file():
        raise L2OError(f"baselines_from={str(source)!r} holds no l2o-eval units (no partial/meta.json); "
                       "pass the run directory of an earlier l2o-eval run.")
    diff = differing_keys(json.loads(meta_path.read_text()), settings, ignore={"optimizers", "checkpoints", "fingerprints"})
    if diff:
        raise L2OError(f"baselines_from={str(source)!r} was evaluated with different settings ({', '.join(diff)}); "
                       "its baselines cannot stand in for this evaluation's.")


def reuse_baselines(source: Path, store: Partial, names: list[str], num_chunks: int, tuned: bool) -> list[str]:
    """Copy the baselines' tuning and test units of the evaluation in `source` into `store`: valid
    because a baseline's results depend only on the settings `meta.json` records (checked by
    `check_baselines_source`) and on the optimizee and baseline configs (checked by the CLI), never
    on the learned optimizers. A source that holds a baseline's tuning and only some of its units or
    none (a stopped evaluation, or a study record that kept its tables and not its store) gives what
    it has: the rest runs here, at the lr it tuned."""
    src = source / "partial"
    their_tuning = json.loads((src / "tuning.json").read_text()) if (src / "tuning.json").is_file() else {}
    reused = []
    for name in names:
        if tuned and name not in their_tuning.get("selected", {}):
            continue
        units = {k: unit for k in range(num_chunks) if (unit := src / name / f"{k:05d}.pt").is_file()}
        if not tuned and not units:
            continue
        for k, unit in units.items():
            if not store.path(name, k).exists():
                store.path(name, k).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(unit, store.path(name, k))
        if tuned:
            store.tuning["selected"][name] = their_tuning["selected"][name]
            store.tuning["scores"][name] = their_tuning["scores"][name]
        left = num_chunks - len(units)
        reused.append(name if not left else f"{name} (its tuning and {len(units)} of {num_chunks} chunks; {left} run here)")
    store.save_tuning(store.tuning)
    print(f"l2o-eval: baselines {', '.join(reused) or '(none)'} reused from {source}", file=sys.stderr)
    return reused


def save_unit(path: str | Path, unit: dict[str, Any]) -> None:
    atomic_write(path, lambda fh: torch.save(unit, fh))


def run_unit(name: str, learned: dict[str, OptimizerNet], baselines: dict[str, OptimizerFactory],
             lrs: dict[str, float | None], problem, steps: int, divergence_factor: float) -> dict[str, Any]:
    """One optimizer on one chunk of test problems: losses (T+1, b) and per-problem test metrics
    (NaN for a diverged problem)."""
    if name in learned:
        losses, final_params, final_state = run_learned(learned[name], problem, steps)
    else:
        losses, final_params, final_state = run_torch_optimizer(baselines[name], problem, steps, lrs[name])
    metrics: dict[str, torch.Tensor] = {}
    if problem.has_test_metrics:  # MNIST, CIFAR: test-set loss and accuracy (with the final batch-norm statistics)
        alive = ~diverged_mask(losses, divergence_factor)[-1].to(final_params.device)
        if alive.any():
            rows = alive.nonzero().flatten()
            for key, values in problem.test_metrics(final_params[alive], select_instances(final_state, rows)).items():
                full = torch.full((losses.shape[1],), math.nan, dtype=torch.float64)
                full[alive.cpu()] = values.double().cpu()
                metrics[key] = full
    return {"losses": losses.cpu(), "metrics": metrics}


_WORKER: dict[str, Any] = {}


def _init_worker(blob: bytes, threads: int) -> None:
    """A worker process of a parallel evaluation: its share of the cores, and the evaluation's
    family, optimizers and settings (the learned nets rebuilt from config + weights)."""
    torch.set_num_threads(threads)
    configure_torch()
    job = pickle.loads(blob)
    learned = {}
    for name, (config, weights, compiled) in job.pop("learned").items():
        net = build_net(config)
        net.load_state_dict(weights)
        learned[name] = net.compile_layers(compiled)
    _WORKER.update(job, learned=learned)


def _worker_unit(name: str, seeds: list[int], path: str) -> str:
    w = _WORKER
    problem = w["family"].sample(seeds, w["device"])
    save_unit(path, run_unit(name, w["learned"], w["baselines"], w["lrs"], problem, w["steps"], w["divergence_factor"]))
    return path


def combine(units: list[dict[str, Any]], divergence_factor: float) -> tuple[Curve, dict[str, float]]:
    """One optimizer's curve and mean test metrics over the chunks done so far."""
    curve = Curve.from_losses(torch.cat([u["losses"] for u in units], dim=1), divergence_factor)
    extra = {}
    for key in units[0]["metrics"]:
        values = torch.cat([u["metrics"][key] for u in units])
        values = values[~values.isnan()]
        if len(values):
            extra[key] = float(values.mean())
    return curve, extra


def tune_baselines(family: Family, baselines: dict[str, OptimizerFactory], protocol: Protocol, store: Partial,
                   device: torch.device, progress: bool = False) -> dict[str, float | None]:
    """Each baseline's lr: tuned on the validation problems (saved as soon as each is) or, without
    a tuning grid, its configured one. A baseline whose every grid lr diverged runs at the smallest."""
    t = protocol.tuning
    tuning = store.tuning
    lrs: dict[str, float | None] = {}
    problem = None
    todo = [name for name in baselines if t.grid and name not in tuning["selected"]]
    bar = tqdm(total=len(todo) * len(t.grid), desc="tune", disable=not (progress and todo), dynamic_ncols=True,
               mininterval=1.0)
    for name, factory in baselines.items():
        if not t.grid:
            lrs[name] = factory.keywords.get("lr") if isinstance(factory, functools.partial) else None
            continue
        if name not in tuning["selected"]:
            if problem is None:
                problem = family.sample(split_seeds("val", t.num_problems), device)
            bar.set_postfix_str(name)
            tuning["selected"][name], tuning["scores"][name] = tune_lr(factory, problem, t.steps, t.grid, t.metric,
                                                                       protocol.divergence_factor, lambda: bar.update(1))
            store.save_tuning(tuning)
        lrs[name] = tuning["selected"][name] if tuning["selected"][name] is not None else min(t.grid)
    bar.close()
    return lrs


def run_units(jobs: list[str], chunks: list[list[int]], run: dict[str, Any], store: Partial, workers: int,
              progress: bool, on_done: Any) -> dict[str, list[dict[str, Any]]]:
    """Every optimizer on every chunk of test problems, skipping the units saved before (resume):
    here one by one, or `workers` at once in worker processes sharing the cores (on the CPU the
    LSTM's small kernels use a second thread poorly, two one-thread processes do not). `run`:
    family, learned, baselines, lrs, steps, device, divergence_factor."""
    units = {name: [store.load(name, k) for k in range(len(chunks))] for name in jobs}
    todo = [(k, name) for k in range(len(chunks)) for name in jobs if units[name][k] is None]
    bar = tqdm(total=len(chunks) * len(jobs), initial=len(chunks) * len(jobs) - len(todo), desc="evaluate",
               disable=not progress, dynamic_ncols=True, mininterval=1.0)

    def finished(name: str, k: int, unit: dict[str, Any]) -> None:
        units[name][k] = unit
        bar.update(1)
        store.unit_done(name, k)
        on_done(units)

    if workers > 1 and len(todo) > 1:
        blob = pickle.dumps({**{k: v for k, v in run.items() if k != "learned"},
                             "learned": {n: (net.full_config(), net.state_dict(), net.compiled) for n, net in run["learned"].items()}})
        threads = max(1, torch.get_num_threads() // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                                 initargs=(blob, threads)) as pool:
            running = {pool.submit(_worker_unit, name, chunks[k], str(store.path(name, k))): (name, k) for k, name in todo}
            while running:
                for future in wait(running, return_when=FIRST_COMPLETED)[0]:
                    name, k = running.pop(future)
                    future.result()
                    finished(name, k, store.load(name, k))
    else:
        problems: dict[int, Any] = {}
        for k, name in todo:
            bar.set_postfix_str(f"{name}, chunk {k + 1} of {len(chunks)}")
            if k not in problems:
                problems = {k: run["family"].sample(chunks[k], run["device"])}
            unit = run_unit(name, run["learned"], run["baselines"], run["lrs"], problems[k], run["steps"],
                            run["divergence_factor"])
            store.save(name, k, unit)
            finished(name, k, unit)
    bar.close()
    return units


def evaluate(family: Family, *, learned: dict[str, OptimizerNet], baselines: dict[str, OptimizerFactory],
             protocol: Protocol, device: torch.device, out_dir: str | Path, optimizee_name: str, progress: bool = True,
             meta: dict[str, Any] | None = None, resume: bool = False,
             baselines_from: str | Path | None = None) -> tuple[dict[str, Any], str]:
    """Tune each baseline's lr on the validation problems, then run everything on the test problems
    (seeds disjoint from training and validation) in units of `protocol.chunk_problems`, each saved
    as it finishes; write all result files. `meta` (what else defines this evaluation, e.g. the
    checkpoints) must match on resume. `baselines_from` (an earlier evaluation's directory with the
    same settings) supplies the baselines' tuning and test units, so new learned optimizers run alone."""
    out, jobs = Path(out_dir), list(learned) + list(baselines)
    settings = {"optimizee": optimizee_name, **protocol.record(), "optimizers": jobs, **(meta or {})}
    if baselines_from is not None:
        check_baselines_source(Path(baselines_from), settings)
    store = Partial(out / "partial", settings, resume, protocol.tuning)
    seeds = split_seeds("test", protocol.num_test)
    chunks = [seeds[i : i + protocol.chunk_problems] for i in range(0, protocol.num_test, protocol.chunk_problems)]
    if baselines_from is not None:
        reuse_baselines(Path(baselines_from), store, list(baselines), len(chunks), bool(protocol.tuning.grid))
    lrs = {**dict.fromkeys(learned), **tune_baselines(family, baselines, protocol, store, device, progress)}
    run = {"family": family, "learned": learned, "baselines": baselines, "lrs": lrs, "steps": protocol.steps,
           "device": device, "divergence_factor": protocol.divergence_factor}

    def progress_files(units: dict[str, list[dict[str, Any] | None]]) -> None:
        if len(chunks) > 1:
            write_progress(out, units, lrs, optimizee_name, protocol.divergence_factor, protocol.num_test)

    units = run_units(jobs, chunks, run, store, protocol.workers, progress, progress_files)
    curves, extra = {}, {}
    for name in jobs:
        curves[name], extra[name] = combine(units[name], protocol.divergence_factor)
    summary = report.summarize(curves, lrs, optimizee_name, protocol.steps, protocol.num_test)
    if meta and meta.get("optimizee_description"):  # e.g. neural art's feature network, named in every output
        summary["optimizee_description"] = meta["optimizee_description"]
    for name, values in extra.items():
        summary["optimizers"][name].update(values)
    return summary, report.write_all(out, curves, lrs, summary, list(learned), store.tuning)


def write_progress(out: Path, units: dict[str, list[dict[str, Any] | None]], lrs: dict[str, float | None],
                   optimizee: str, divergence_factor: float, num_test: int) -> None:
    """curves.csv and loss.png from the chunks finished so far (the final files replace them)."""
    finished = {name: [u for u in all_units if u is not None] for name, all_units in units.items()}
    curves = {name: combine(done, divergence_factor)[0] for name, done in finished.items() if done}
    report.write_curves_csv(out / "curves.csv", curves)
    done = min(sum(u["losses"].shape[1] for u in done) for done in finished.values())
    report.plot_curves(out / "loss.png", curves, lrs, f"{optimizee}: so far ({done} of {num_test} problems by every optimizer)")
