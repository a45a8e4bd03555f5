"""The statistics every results table rests on: divergence masks, the per-step mean and 95% CI
over the problems that did not diverge, the tuning score, and the lr tuning when every grid value
diverges."""
import functools
import math

import pytest
import torch

from l2o.evaluation.evaluate import Partial, tune_baselines
from l2o.evaluation.protocol import Tuning, Protocol
from l2o.evaluation.stats import Z95, Curve, diverged_mask, score
from l2o.optimizees import Quadratic

NAN = float("nan")


def test_a_problem_counts_as_diverged_from_its_first_bad_step_on():
    losses = torch.tensor([[1.0, 1.0, 2.0],
                           [0.5, 3.0, 25.0],    # problem 2: above 10 × its initial 2.0 at step 1
                           [0.2, NAN, 1.0],     # problem 1: non-finite at step 2; problem 2 back down, still diverged
                           [0.1, 0.5, 0.5]])
    mask = diverged_mask(losses, 10.0)
    assert mask.tolist() == [[False, False, False], [False, False, True], [False, True, True], [False, True, True]]
    assert diverged_mask(losses, 20.0)[:, 2].tolist() == [False, False, False, False]   # 25 < 20 × 2


def test_curve_is_the_mean_and_95_interval_over_the_problems_still_counted():
    losses = torch.tensor([[1.0, 2.0, 4.0],
                           [0.5, 1.0, float("inf")],
                           [0.25, 0.5, 1.0]], dtype=torch.float64)
    c = Curve.from_losses(losses, 10.0)
    assert c.n.tolist() == [3, 2, 2] and c.diverged == pytest.approx(1 / 3)
    assert c.mean.tolist() == pytest.approx([7 / 3, 0.75, 0.375])
    half = Z95 * torch.tensor([0.25, 0.5]).std() / math.sqrt(2)   # the last step: problems 0 and 1 only
    assert [float(c.lo[-1]), float(c.hi[-1])] == pytest.approx([0.375 - float(half), 0.375 + float(half)])
    assert c.sum_loss == pytest.approx(((0.5 + 0.25) + (1.0 + 0.5)) / 2)   # Σ over steps 1..T, mean over the counted
    assert c.final.tolist() == [0.25, 0.5] and c.final_log_loss == pytest.approx((math.log(0.25) + math.log(0.5)) / 2)
    every = Curve.from_losses(torch.tensor([[1.0], [NAN]]), 10.0)
    assert every.diverged == 1.0 and math.isnan(float(every.mean[-1])) and math.isnan(every.sum_loss)
    one = Curve.from_losses(torch.tensor([[1.0], [0.5]]), 10.0)
    assert float(one.mean[-1]) == 0.5 and math.isnan(float(one.lo[-1]))   # no interval from one problem


def test_tuning_score_is_infinite_when_any_problem_diverged():
    good = torch.tensor([[1.0, 1.0], [0.5, 0.7], [0.2, 0.4]])
    assert score(good, "final", 10.0) == pytest.approx(0.3) and score(good, "sum", 10.0) == pytest.approx(0.9)
    bad = good.clone()
    bad[2, 1] = NAN
    assert score(bad, "final", 10.0) == math.inf and score(bad, "sum", 10.0) == math.inf


def test_a_baseline_whose_every_lr_diverges_runs_at_the_smallest_and_says_so(tmp_path):
    grid = (1e3, 1e4)   # SGD on a quadratic: every one of these lrs blows up
    protocol = Protocol(steps=5, num_test=2, chunk_problems=2, tuning=Tuning(grid, "final", 2, 5))
    store = Partial(tmp_path / "partial", {"x": 1}, resume=False, tuning=protocol.tuning)
    baselines = {"sgd": functools.partial(torch.optim.SGD), "adam": functools.partial(torch.optim.Adam)}
    lrs = tune_baselines(Quadratic(), baselines, Protocol(5, 2, 2, Tuning((1e-2, 1e-1), "final", 2, 5)), store, "cpu")
    assert set(lrs) == {"sgd", "adam"} and all(lr in (1e-2, 1e-1) for lr in lrs.values())
    store = Partial(tmp_path / "partial2", {"x": 1}, resume=False, tuning=protocol.tuning)
    lrs = tune_baselines(Quadratic(), {"sgd": baselines["sgd"]}, protocol, store, "cpu")
    assert store.tuning["selected"]["sgd"] is None and lrs["sgd"] == min(grid)
    assert all(v == math.inf for v in store.tuning["scores"]["sgd"].values())
    untuned = Protocol(5, 2, 2, Tuning((), "final", 2, 5))   # tuning off: each baseline at its configured lr
    store = Partial(tmp_path / "partial3", {"x": 1}, resume=False, tuning=untuned.tuning)
    assert tune_baselines(Quadratic(), {"sgd": functools.partial(torch.optim.SGD, lr=0.3)}, untuned, store, "cpu") == {"sgd": 0.3}
