"""The conv autoencoder optimizee: B batched instances compute exactly what B torch.nn models with
the same weights compute (grouped and grouped-transposed convolutions), and it is scored by
reconstruction error."""
import pytest
import torch
import torch.nn.functional as F

from l2o.errors import L2OError
from l2o.optimizees.autoencoder import ConvAutoencoder
from l2o.optimizees.base import split_seeds


class Images:
    """A torchvision-style dataset of random 16×16 grey images."""

    def __init__(self, n, seed):
        gen = torch.Generator().manual_seed(seed)
        self.data = torch.randint(0, 256, (n, 16, 16), generator=gen, dtype=torch.uint8)
        self.targets = torch.zeros(n, dtype=torch.long)


def test_batched_autoencoder_equals_torch_nn_models_with_the_same_weights():
    family = ConvAutoencoder(Images(64, 0), Images(20, 1), channels=[4, 6], batch_size=8, test_part_start=48)
    family.x, family.x_test = family.x.double(), family.x_test.double()
    problem = family.sample(split_seeds("train", 3, start=5))
    theta = problem.init_params().double().requires_grad_(True)
    losses, _ = problem.evaluate(theta, 2, None)
    losses.sum().backward()
    x, _ = problem.batch(2)
    for i in range(3):
        model = family.torch_model().double()
        model.load_state_dict({k: v[i] for k, v in family.spec.unflatten(theta.detach()).items()})
        expected = F.mse_loss(model(x[i]), x[i])
        expected.backward()
        assert torch.allclose(losses[i], expected, rtol=1e-12)
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        assert torch.allclose(theta.grad[i], grads, rtol=1e-10, atol=1e-14)
    assert [tuple(p.shape) for p in family.torch_model().parameters()] == list(family.spec.shapes.values())
    metrics = problem.test_metrics(theta.detach())
    assert set(metrics) == {"test_loss"} and metrics["test_loss"].shape == (3,)
    model = family.torch_model().double()
    model.load_state_dict({k: v[0] for k, v in family.spec.unflatten(theta.detach()).items()})
    with torch.no_grad():
        assert torch.allclose(metrics["test_loss"][0], F.mse_loss(model(family.x_test), family.x_test))


def test_images_that_cannot_be_halved_enough_are_refused():
    with pytest.raises(L2OError, match="halved 5 times"):
        ConvAutoencoder(Images(8, 0), channels=[2, 2, 2, 2, 2], test_part_start=None)
