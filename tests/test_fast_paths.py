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
