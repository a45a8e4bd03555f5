"""L-BFGS as a baseline: one optimizer per problem (its history is not elementwise), every
gradient evaluation counted as a step (a line search's too), selectable from config."""
import functools

import pytest
import torch

from l2o.errors import L2OError
from l2o.evaluation.runners import run_torch_optimizer, snapshots
from l2o.optimizees import MLPClassifier, Quadratic


def test_one_lbfgs_per_problem_exactly_as_torch_runs_it_alone():
    problem = Quadratic().sample([3, 4, 5])
    factory = functools.partial(torch.optim.LBFGS, history_size=5, max_iter=1, tolerance_grad=0.0, tolerance_change=0.0)
    losses, final, state = run_torch_optimizer(factory, problem, 6, 0.3)
    assert losses.shape == (7, 3) and state is None
    for b, seed in enumerate([3, 4, 5]):   # the same problem alone, by hand
        alone = Quadratic().sample([seed])
        theta = alone.init_params()[0].clone().requires_grad_(True)
        opt = factory([theta], lr=0.3)
        seen = []

        def closure():
            opt.zero_grad()
            loss = alone.loss(theta.unsqueeze(0), 0)[0]
            loss.backward()
            seen.append(loss.item())
            return loss

        for _ in range(6):
            opt.step(closure)
        assert losses[:6, b].tolist() == pytest.approx(seen, rel=1e-6)
        assert torch.allclose(final[b], theta.detach()) and losses[6, b] < losses[0, b]


def test_a_line_search_pays_for_every_evaluation():
    problem = Quadratic().sample([7, 8])
    calls = {"n": 0}
    evaluate = problem.evaluate

    def counting(params, step, state):
        calls["n"] += 1
        return evaluate(params, step, state)

    problem.evaluate = counting
    factory = functools.partial(torch.optim.LBFGS, max_iter=20, line_search_fn="strong_wolfe", tolerance_grad=0.0,
                                tolerance_change=0.0)
    losses, _, _ = run_torch_optimizer(factory, problem, 10, 1.0)
    assert calls["n"] == 2 * 10 + 1   # 10 gradient evaluations per problem, then the final losses
    assert torch.isfinite(losses).all() and (losses[-1] < losses[0]).all()


def test_gallery_snapshots_are_the_evaluations_parameters_after_s_gradient_evaluations():
    """The neural-art gallery draws L-BFGS's images too: θ after s gradient evaluations, as the
    evaluation's curve counts them, a line search's included."""
    problem = Quadratic().sample([1, 2])
    factory = functools.partial(torch.optim.LBFGS, max_iter=20, line_search_fn="strong_wolfe", tolerance_grad=0.0,
                                tolerance_change=0.0)
    snaps = snapshots((factory, 0.5), problem, [0, 3, 7])
    assert torch.equal(snaps[0], problem.init_params())
    for s in (3, 7):
        losses, final, _ = run_torch_optimizer(factory, problem, s, 0.5)
        assert torch.equal(snaps[s], final)
        assert torch.allclose(problem.evaluate(snaps[s], s, None)[0], losses[-1])
    assert not torch.equal(snaps[3], snaps[7])


def test_it_refuses_an_optimizee_with_minibatches_or_state(tmp_path):
    from conftest import SHARED_DATA
    from torchvision.datasets import MNIST

    data = MNIST(SHARED_DATA / "mnist", train=False)
    problem = MLPClassifier(data, data, batch_size=8, test_part_start=100).sample([1])
    problem.init_state = lambda: {"running": torch.zeros(1)}
    with pytest.raises(L2OError, match="L-BFGS needs a deterministic optimizee"):
        run_torch_optimizer(functools.partial(torch.optim.LBFGS), problem, 3, 1.0)


def test_lbfgs_is_a_baseline_by_config():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from l2o.cli.common import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("eval", ["+optimizer@baselines.lbfgs=lbfgs", "compare=[adam,lbfgs]",
                               "baselines.lbfgs.line_search_fn=strong_wolfe"])
    factory = instantiate(cfg.baselines.lbfgs)
    assert factory.func is torch.optim.LBFGS and factory.keywords["line_search_fn"] == "strong_wolfe"
    assert list(cfg.compare) == ["adam", "lbfgs"]
