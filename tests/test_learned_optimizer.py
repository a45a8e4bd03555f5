import copy

import pytest
import torch

from l2o.checkpoint import save_checkpoint
from l2o.meta.unroll import rollout
from l2o.optimizees import Quadratic
from l2o.optimizees.base import split_seeds
from l2o.optimizers import LSTMGAC, CoordinatewiseLSTM, LearnedOptimizer, RNNprop

ARCHITECTURES = {
    "lstm": lambda: CoordinatewiseLSTM(hidden_size=10, num_layers=2, preprocess_p=10.0, output_scale=0.1),
    "lstm_gac": lambda: LSTMGAC(hidden_size=10, num_layers=2, preprocess_p=10.0, output_scale=0.1, num_global=3),
    "rnnprop": lambda: RNNprop(hidden_size=10, output_scale=0.1),
    "lstm_odd": lambda: CoordinatewiseLSTM(hidden_size=10, num_layers=2, preprocess_p=10.0, output_scale=0.1, odd=True),
}


def _trained_like_net(arch="lstm"):
    net = ARCHITECTURES[arch]()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_plain_training_loop_matches_the_meta_trainers_evaluation_path(tmp_path, arch):
    net = _trained_like_net(arch)
    save_checkpoint(tmp_path / "net.pt", net, optimizee={"name": "quadratic", "config": {}}, schedule={"horizon": 20})
    problem = Quadratic().sample(split_seeds("test", 1))
    expected = rollout(net, problem, 20)[0][:, 0]

    # a user's plain PyTorch loop over an nn.Module's parameter
    model = torch.nn.Module()
    model.theta = torch.nn.Parameter(problem.init_params()[0].clone())
    opt = LearnedOptimizer(model.parameters(), checkpoint=tmp_path / "net.pt")
    got = []
    for t in range(20):
        opt.zero_grad()
        loss = problem.loss(model.theta.unsqueeze(0), t)[0]
        loss.backward()
        opt.step()
        got.append(loss.detach())
    got.append(problem.loss(model.theta.detach().unsqueeze(0), 20)[0])
    assert torch.allclose(torch.stack(got), expected, rtol=1e-5, atol=1e-6)


def test_several_parameters_share_one_call_and_state_dict_round_trips():
    net = _trained_like_net()
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def train(m, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()

    opt = LearnedOptimizer(model.parameters(), net=net)
    train(model, opt, 3)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    train(model, opt, 4)

    clone = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    clone.load_state_dict(saved_model)
    opt2 = LearnedOptimizer(clone.parameters(), net=net)
    opt2.load_state_dict(saved_opt)
    train(clone, opt2, 4)
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    state = opt.state[next(iter(model.parameters()))]
    assert set(state) == {"h0", "c0", "h1", "c1", "step"} and state["h0"].shape == (10, 12) and state["step"] == 7


def _train_mlp(opt_kwargs, steps=6, arch="lstm"):
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x, y = torch.randn(32, 5), torch.randn(32, 1)
    start = [p.detach().clone() for p in model.parameters()]
    opt = LearnedOptimizer(model, net=_trained_like_net(arch), **opt_kwargs)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, opt, start


def test_chunk_size_changes_nothing_but_the_chunking():
    """chunk_size=7 steps a coordinatewise net's 57 coordinates in calls of at most 7 or of one row
    (slices of whole rows of the 8x5 weight, so they keep its fan-in; the 1x8 weight's row alone;
    small tensors together) and LSTM+GAC's in one call: every update is unchanged."""
    for arch in ("lstm", "rnnprop", "lstm_gac"):
        ref, _, _ = _train_mlp({}, arch=arch)
        got, opt, _ = _train_mlp({"chunk_size": 7}, arch=arch)
        assert all(net.chunk_size == 7 for net in opt._nets.values())
        params = list(got.parameters())
        sizes = [sum(e - s for _, s, e in piece) for piece in opt._pieces(params, next(iter(opt._nets.values())))]
        assert sizes == ([57] if arch == "lstm_gac" else [5] * 7 + [7, 6, 8, 1])
        for a, b in zip(ref.parameters(), got.parameters()):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_low_precision_state_is_stored_so_and_moves_parameters_like_fp32():
    ref, _, start = _train_mlp({})
    low, opt, _ = _train_mlp({"state_dtype": torch.bfloat16})
    for p in low.parameters():
        state = opt.state[p]
        assert all(v.dtype == torch.bfloat16 for k, v in state.items() if k != "step")
        assert p.dtype == torch.float32
    moved = torch.cat([(a - s).flatten() for a, s in zip(ref.parameters(), start)])
    diff = torch.cat([(a - b).flatten() for a, b in zip(ref.parameters(), low.parameters())])
    assert moved.norm() > 0
    assert diff.norm() < 0.05 * moved.norm()  # bfloat16 rounds h and c to ~3 significant digits
    assert diff.norm() > 0  # the rounded state is really what the net read
    again = LearnedOptimizer(low, net=_trained_like_net(), state_dtype=torch.bfloat16)
    again.load_state_dict(opt.state_dict())  # torch.optim casts state to fp32 on load; kept in bfloat16
    for p in low.parameters():
        assert all(v.dtype == torch.bfloat16 for k, v in again.state[p].items() if k != "step")
        assert all(torch.equal(v, opt.state[p][k]) for k, v in again.state[p].items())


def test_bad_low_precision_and_chunk_arguments_are_refused():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="chunk_size"):
        LearnedOptimizer(model, net=_trained_like_net(), chunk_size=0)
    with pytest.raises(ValueError, match="state_dtype"):
        LearnedOptimizer(model, net=_trained_like_net(), state_dtype=torch.int8)
