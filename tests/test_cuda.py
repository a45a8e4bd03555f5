"""The GPU path against the CPU path (skipped without CUDA; scripts/gpu_check.sh runs them with -m cuda)."""
import copy

import pytest
import torch

from l2o.layout import Layout
from l2o.meta.unroll import start, unroll
from l2o.optimizees import Quadratic
from l2o.optimizees.base import split_seeds
from l2o.optimizers import CoordinatewiseLSTM, LearnedOptimizer, RNNprop

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(autouse=True)
def _exact_matmuls():
    """TF32 would make CUDA matmuls differ from the CPU's by ~1e-3; the comparisons want fp32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _net(cls=CoordinatewiseLSTM, **kwargs):
    torch.manual_seed(0)
    net = cls(**kwargs) if kwargs else cls(hidden_size=20, num_layers=2, preprocess_p=10.0, output_scale=0.1)
    with torch.no_grad():
        net.out_weight.normal_(0, 0.3)
    return net


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("cls", [CoordinatewiseLSTM, RNNprop])
def test_chunked_inference_on_cuda_equals_the_cpu(cls, compiled):
    net = _net(cls) if cls is CoordinatewiseLSTM else _net(cls, hidden_size=20)
    layout = Layout.build([("w", (50_000,), "other")], num_instances=2)
    grad = torch.randn(layout.size) * 1e-3
    cpu_state = net.init_state(layout)
    gpu_net = _net(cls) if cls is CoordinatewiseLSTM else _net(cls, hidden_size=20)
    gpu_net = gpu_net.cuda().compile_layers(compiled)
    gpu_net.chunk_size = 8192
    gpu_state = gpu_net.init_state(layout)
    with torch.no_grad():
        for step in range(3):
            u_cpu, cpu_state = net.update(grad, cpu_state, layout, None, step)
            u_gpu, gpu_state = gpu_net.update(grad.cuda(), gpu_state, layout, None, step)
    assert torch.allclose(u_gpu.cpu(), u_cpu, rtol=1e-4, atol=1e-6)
    for k in cpu_state:
        assert torch.allclose(gpu_state[k].cpu(), cpu_state[k], rtol=1e-4, atol=1e-5), k


@pytest.mark.parametrize("compiled", [False, True])
def test_unroll_meta_gradients_on_cuda_equal_the_cpu(compiled):
    problem_cpu = Quadratic().sample(split_seeds("train", 16))
    problem_gpu = Quadratic().sample(split_seeds("train", 16), "cuda")
    results = []
    for net, problem in ((_net(), problem_cpu), (_net().cuda().compile_layers(compiled), problem_gpu)):
        carry = start(net, problem)
        meta, losses, carry = unroll(net, problem, carry, 10, lambda loss, t: loss.mean())
        grads = torch.autograd.grad(meta, list(net.parameters()))
        results.append((losses.cpu(), [g.cpu() for g in grads], carry.params.cpu()))
    (l1, g1, p1), (l2, g2, p2) = results
    assert torch.allclose(l1, l2, rtol=1e-4, atol=1e-5)
    assert torch.allclose(p1, p2, rtol=1e-4, atol=1e-5)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("state_dtype", [None, torch.bfloat16])
def test_learned_optimizer_on_a_cuda_model_equals_the_cpu(state_dtype):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 10))
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    finals = []
    for device in ("cpu", "cuda"):
        m = copy.deepcopy(model).to(device)
        opt = LearnedOptimizer(m, net=_net(), state_dtype=state_dtype, chunk_size=1000)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x.to(device)), y.to(device)).backward()
            opt.step()
        finals.append(torch.cat([p.detach().cpu().flatten() for p in m.parameters()]))
    moved = (finals[0] - torch.cat([p.detach().flatten() for p in model.parameters()])).norm()
    assert moved > 0
    assert (finals[0] - finals[1]).norm() < (1e-4 if state_dtype is None else 2e-2) * moved
