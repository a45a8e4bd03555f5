"""Every fast path gives the plain path's results (to float tolerance)."""
import torch

from l2o.meta.unroll import start, unroll
from l2o.optimizees import Quadratic
from l2o.optimizees.base import split_seeds
from l2o.optimizers import CoordinatewiseLSTM
from l2o.optimizers.lstm import lstm_layer


def _reference_layer(weight, x, h, c, ones):
    """The textbook LSTM cell, gate by gate, as in torch.nn.LSTMCell (gate order i, f, o, g)."""
    H = h.shape[0]
    W = weight
    Wh, Wx, b = W[:, :H], W[:, H : H + x.shape[0]], W[:, -1:]
    pre = [Wh[k * H : (k + 1) * H] @ h + Wx[k * H : (k + 1) * H] @ x + b[k * H : (k + 1) * H] for k in range(4)]
    i, f, o, g = torch.sigmoid(pre[0]), torch.sigmoid(pre[1]), torch.sigmoid(pre[2]), torch.tanh(pre[3])
    c = f * c + i * g
    return o * torch.tanh(c), c


def test_fused_layer_equals_textbook_cell():
    H, F, N = 20, 2, 300
    W = torch.randn(4 * H, H + F + 1, dtype=torch.float64)
    x, h, c = torch.randn(F, N, dtype=torch.float64), torch.randn(H, N, dtype=torch.float64), torch.randn(H, N, dtype=torch.float64)
    ones = torch.ones(1, N, dtype=torch.float64)
    for a, b in zip(lstm_layer(W, x, h, c, ones), _reference_layer(W, x, h, c, ones)):
        assert torch.allclose(a, b, atol=1e-12)


def _meta_grads(net, problem):
    carry = start(net, problem)
    meta, losses, _ = unroll(net, problem, carry, 10, lambda loss, t: loss.mean())
    return losses, torch.autograd.grad(meta, list(net.parameters()))


def test_compiled_layers_equal_eager_updates_and_meta_gradients():
    torch.manual_seed(0)
    net = CoordinatewiseLSTM(hidden_size=20, num_layers=2, preprocess_p=10.0, output_scale=0.1)
    with torch.no_grad():
        net.out_weight.normal_()
    problem = Quadratic().sample(split_seeds("train", 16))
    eager_losses, eager_grads = _meta_grads(net, problem)
    net.compile_layers()
    compiled_losses, compiled_grads = _meta_grads(net, problem)
    assert torch.allclose(eager_losses, compiled_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager_grads, compiled_grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)


def _nets():
    from l2o.optimizers.rnnprop import RNNprop

    torch.manual_seed(1)
    nets = [CoordinatewiseLSTM(hidden_size=8, num_layers=2, preprocess_p=10.0, output_scale=0.1),
            CoordinatewiseLSTM(hidden_size=5, num_layers=1, preprocess_p=None, output_scale=1.0),
            CoordinatewiseLSTM(hidden_size=5, num_layers=0, preprocess_p=10.0, output_scale=1.0),
            RNNprop(hidden_size=6, input_units=4)]
    for net in nets:
        with torch.no_grad():
            net.out_weight.normal_()
    return nets


def _run_steps(net, grads, layout, chunk_size=None, grad_enabled=True):
    """Three updates from a fresh state; the plain (autograd) path when grad is enabled."""
    if chunk_size is not None:
        net.chunk_size = chunk_size
    state = net.init_state(layout)
    updates = []
    with torch.set_grad_enabled(grad_enabled):
        for step, g in enumerate(grads):
            u, state = net.update(g, state, layout, None, step)
            updates.append(u.detach())
    return torch.stack(updates), {k: v.detach() for k, v in state.items()}


def test_chunked_inference_equals_plain_path_for_every_chunk_size():
    """Without autograd the LSTM runs chunk by chunk through preallocated outputs; every chunk
    size (1 column, a size that does not divide N, one chunk for all) gives the plain path's
    updates and state, also for RNNprop's inputs and a 0- or 1-layer net."""
    from l2o.layout import Layout

    layout = Layout.build([("a", (3, 7), "other"), ("b", (11,), "other")], num_instances=2)
    grads = [torch.randn(layout.size) * 10.0 ** torch.randint(-6, 1, (layout.size,)) for _ in range(3)]
    for net in _nets():
        plain_u, plain_s = _run_steps(net, grads, layout, grad_enabled=True)
        for chunk in (1, 13, layout.size, 10_000):
            u, s = _run_steps(net, grads, layout, chunk_size=chunk, grad_enabled=False)
            assert torch.allclose(u, plain_u, rtol=1e-5, atol=1e-7), (type(net).__name__, chunk)
            assert s.keys() == plain_s.keys()
            for k in s:
                assert torch.allclose(s[k], plain_s[k], rtol=1e-5, atol=1e-6), (type(net).__name__, chunk, k)


def test_compiled_chunked_inference_equals_eager():
    from l2o.layout import Layout

    layout = Layout.build([("w", (300,), "other")], num_instances=1)
    grads = [torch.randn(layout.size) * 1e-3 for _ in range(3)]
    net = _nets()[0]
    eager_u, eager_s = _run_steps(net, grads, layout, chunk_size=128, grad_enabled=False)
    net.compile_layers()
    comp_u, comp_s = _run_steps(net, grads, layout, chunk_size=128, grad_enabled=False)
    assert torch.allclose(eager_u, comp_u, rtol=1e-4, atol=1e-6)
    for k in eager_s:
        assert torch.allclose(eager_s[k], comp_s[k], rtol=1e-4, atol=1e-5)
