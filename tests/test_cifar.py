"""The CIFAR-10 optimizee: the batched functional CNN against torch.nn, batch-norm state, label
subsets, routing of its parameter kinds, the md5-checked subset, and the presets end to end."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO, SHARED_DATA, TINY_EVAL, TINY_TRAIN, run_cli
from l2o.datasets import CIFAR10Subset
from l2o.errors import L2OError
from l2o.layout import module_layout
from l2o.optimizees import ConvClassifier
from l2o.optimizees.base import split_seeds
from l2o.optimizers import CoordinatewiseLSTM, Routed

SUBSET = SHARED_DATA / "cifar10_subset"


@pytest.fixture(scope="module")
def data():
    return CIFAR10Subset(SUBSET, train=True), CIFAR10Subset(SUBSET, train=False)


@pytest.fixture(scope="module")
def family(data):
    return ConvClassifier(*data, batch_size=16)


def test_subset_loads_as_torchvision_cifar10_does(data):
    train, test = data
    assert train.data.shape == (4000, 32, 32, 3) and train.data.dtype.name == "uint8" and len(train.targets) == 4000
    assert test.data.shape == (1000, 32, 32, 3) and len(test.targets) == 1000
    counts = torch.bincount(torch.tensor(train.targets), minlength=10).tolist()
    assert counts == [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]  # shared/data/README.md
    image, label = train[0]
    assert image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1 and label == train.targets[0]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_file_is_an_error_naming_it(tmp_path, damage):
    root = tmp_path / "cifar10_subset"
    shutil.copytree(SUBSET, root)
    bad = root / "cifar10_batch_2.png"
    bad.chmod(0o644)
    if damage == "missing":
        bad.unlink()
    else:
        raw = bytearray(bad.read_bytes())
        raw[5000] ^= 0xFF  # one flipped byte, same size
        bad.write_bytes(bytes(raw))
    with pytest.raises(L2OError, match=f"{damage}.*" if damage == "corrupt" else "missing") as err:
        CIFAR10Subset(root, train=True)
    assert str(bad) in str(err.value)
    CIFAR10Subset(root, train=False)  # the test split does not use that file


def _one_instance_model(family, theta, state, i):
    """torch.nn model of instance i with its weights and batch-norm running statistics."""
    model = family.torch_model().to(theta.dtype)
    params = {k: v[i] for k, v in family.spec.unflatten(theta).items()}
    buffers = {k: v[i].clone() for k, v in state.items()}
    missing, unexpected = model.load_state_dict({**params, **buffers}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    return model


def test_batched_cnn_equals_torch_nn_models_with_the_same_weights(data):
    """Training mode (minibatch statistics, running statistics updated as nn.BatchNorm2d does),
    then evaluation mode on the running statistics, for each of 3 batched instances; in float64,
    so any difference is a difference in the math, not in convolution algorithms."""
    family = ConvClassifier(*data, batch_size=16)
    family.x, family.x_test = family.x.double(), family.x_test.double()
    problem = family.sample(split_seeds("train", 3, start=7))
    theta = (problem.init_params().double() + 0.05 * torch.randn(3, family.spec.numel)).requires_grad_(True)
    state0 = problem.init_state()
    models = [_one_instance_model(family, theta.detach(), state0, i) for i in range(3)]
    state = state0
    for step in range(3):
        losses, state = problem.evaluate(theta, step, state)
        (grad,) = torch.autograd.grad(losses.sum(), theta)
        x, y = problem.batch(step)
        for i, model in enumerate(models):
            model.train()
            model.zero_grad()
            expected = torch.nn.functional.cross_entropy(model(x[i]), y[i])
            expected.backward()
            assert torch.allclose(losses[i], expected, atol=1e-10)
            torch_grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            assert torch.allclose(grad[i], torch_grad, atol=1e-10)
            for name, value in state.items():
                assert torch.allclose(value[i], model.state_dict()[name], atol=1e-10), name
    metrics = problem.test_metrics(theta.detach(), state, chunk=2, images=7)  # chunked both ways
    for i, model in enumerate(models):
        model.eval()
        with torch.no_grad():
            logits = model(family.x_test)
        loss = torch.nn.functional.cross_entropy(logits, family.y_test)
        assert torch.allclose(metrics["test_loss"][i].double(), loss, atol=1e-10)
        assert metrics["test_accuracy"][i] == (logits.argmax(1) == family.y_test).float().mean()


def test_batched_instances_equal_instances_run_one_by_one(family):
    seeds = split_seeds("val", 3, start=2)
    batch = family.sample(seeds)
    theta = batch.init_params().requires_grad_(True)
    losses, state = batch.evaluate(theta, 4, batch.init_state())
    (grad,) = torch.autograd.grad(losses.sum(), theta)
    for i, seed in enumerate(seeds):
        one = family.sample([seed])
        th = one.init_params().requires_grad_(True)
        assert torch.equal(th.detach()[0], theta.detach()[i])
        loss, st = one.evaluate(th, 4, one.init_state())
        (g,) = torch.autograd.grad(loss.sum(), th)
        assert torch.allclose(loss[0], losses[i], atol=1e-5) and torch.allclose(g[0], grad[i], atol=1e-5)
        assert all(torch.allclose(st[k][0], state[k][i], atol=1e-6) for k in st)


def test_initialisation_is_torch_nn_default_and_seeded(family):
    theta = family.sample([5]).init_params()[0]
    p = family.spec.unflatten(theta.unsqueeze(0))
    assert torch.equal(p["1.weight"], torch.ones(1, 16)) and torch.equal(p["1.bias"], torch.zeros(1, 16))
    bound = 1 / (3 * 25) ** 0.5
    assert p["0.weight"].abs().max() <= bound and p["0.weight"].abs().max() > 0.9 * bound
    assert torch.equal(theta, family.sample([5]).init_params()[0])
    assert not torch.equal(theta, family.sample([6]).init_params()[0])


@pytest.mark.parametrize("labels", [[3, 7], [0, 1, 2, 3, 4], [9, 8, 0]])
def test_label_subsets_hold_only_the_chosen_labels_remapped(data, labels):
    fam = ConvClassifier(*data, batch_size=8, labels=labels)
    ys = torch.tensor(data[0].targets)
    keep = torch.isin(ys, torch.tensor(labels))
    assert fam.x.shape[0] == int(keep.sum()) and fam.num_classes == len(labels)
    expected = torch.tensor([labels.index(int(v)) for v in ys[keep]])
    assert torch.equal(fam.y, expected)
    assert set(fam.y_test.tolist()) == set(range(len(labels)))
    assert fam.spec.shapes["15.weight"] == (len(labels), 32)
    # the images kept are exactly those of the chosen labels, in order
    assert torch.equal(fam.x, ConvClassifier(*data, batch_size=8).x[keep])


def test_bad_label_subsets_are_refused(data):
    for labels in ([3], [1, 1], [0, 10]):
        with pytest.raises(L2OError, match="optimizee.labels"):
            ConvClassifier(*data, labels=labels)


def _lstm(seed):
    torch.manual_seed(seed)
    return CoordinatewiseLSTM(hidden_size=4, num_layers=1, preprocess_p=10.0)


@pytest.mark.parametrize("rules, expected", [
    ({"conv": {"kinds": ["conv_weight", "conv_bias", "norm_scale", "norm_shift"]}, "fc": {"kinds": ["linear_weight", "linear_bias"]}},
     {"conv": ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias", "8.weight", "8.bias", "9.weight", "9.bias"],
      "fc": ["13.weight", "13.bias", "15.weight", "15.bias"]}),
    ({"conv": {"kinds": ["conv_weight"]}, "rest": {"kinds": ["*"]}},
     {"conv": ["0.weight", "4.weight", "8.weight"],
      "rest": ["0.bias", "1.weight", "1.bias", "4.bias", "5.weight", "5.bias", "8.bias", "9.weight", "9.bias",
               "13.weight", "13.bias", "15.weight", "15.bias"]}),
])
def test_routing_sends_conv_and_fc_parameters_to_their_lstms(family, rules, expected):
    net = Routed({name: {"match": match, "net": _lstm(i)} for i, (name, match) in enumerate(rules.items())})
    layout = family.sample([0]).layout
    owned = {sub: [layout.names[i] for i in tensors] for sub, tensors in net.route(layout).items()}
    assert owned == expected
    assert layout == module_layout(family.torch_model()) or layout.names == module_layout(family.torch_model()).names


TINY_CIFAR = ("optimizee.batch_size=8", "schedule.num_val=2", "schedule.truncation.validate_at=[10,20]",
              "schedule.imitation.probability=0.5")  # validation past T and imitation of NAG, tiny


@pytest.mark.slow  # the smoke study (tests/test_study.py) runs the same trainings and a CIFAR-2 evaluation
def test_cpu_presets_run_end_to_end_through_the_clis(tmp_path):
    """l2o-train for CIFAR-10 and LSTM-sub, then l2o-eval on CIFAR-10 and CIFAR-2 (both learned
    optimizers on the same problems), on a tiny budget."""
    sub = tmp_path / "outputs/cifar_sub_cpu/train"
    run_cli("l2o-train", "experiment=cifar10_cpu", "optimizee=cifar_cnn_subset", *TINY_TRAIN, *TINY_CIFAR, "schedule.problems_per_epoch=2", cwd=tmp_path)
    run_cli("l2o-train", "experiment=cifar10_cpu", "optimizee=cifar_cnn_subset", "optimizee.labels=[5,6,7,8,9]", *TINY_TRAIN, *TINY_CIFAR,
            "schedule.problems_per_epoch=2", f"hydra.run.dir={sub}", cwd=tmp_path)
    tiny_eval = (*TINY_EVAL, "num_test=4", "steps=6", "tuning.steps=3", "optimizee.batch_size=8", "workers=1")
    ten = run_cli("l2o-eval", "experiment=cifar10_cpu", "optimizee=cifar_cnn_subset", *tiny_eval, cwd=tmp_path)
    assert "test accuracy |" in ten.stdout
    two = run_cli("l2o-eval", "experiment=cifar10_cpu", "optimizee=cifar_cnn_subset", "optimizee.labels=[0,1]", f"+learned.lstm_sub={sub}", *tiny_eval,
                  "hydra.run.dir=outputs/cifar2", cwd=tmp_path)
    assert "lstm_sub" in two.stdout
    ckpt = torch.load(sub / "checkpoints/last.pt", weights_only=True)
    assert ckpt["optimizee"]["config"]["labels"] == [5, 6, 7, 8, 9]
    assert set(ckpt["optimizer"]["nets"]) == {"conv", "fc"}
    summary = json.loads((tmp_path / "outputs/cifar2/summary.json").read_text())
    assert set(summary["optimizers"]) == {"lstm", "lstm_sub", "sgd", "rmsprop", "adam", "nag"}
    assert all(0 <= row["test_accuracy"] <= 1 for row in summary["optimizers"].values())


def test_any_dataset_of_32x32_rgb_images_takes_the_same_path(data):
    """torchvision's CIFAR10 (the full set) has the subset's interface: `.data` (N, 32, 32, 3) uint8 and
    `.targets`; any such dataset gives the same problems as the subset for the same images."""
    from types import SimpleNamespace

    train = data[0]
    plain = SimpleNamespace(data=train.data[:500].copy(), targets=list(train.targets[:500]))
    fam = ConvClassifier(plain, batch_size=8)
    ref = ConvClassifier(train, batch_size=8)
    assert torch.equal(fam.x, ref.x[:500]) and torch.equal(fam.y, ref.y[:500])
    assert fam.sample([3]).evaluate(fam.sample([3]).init_params(), 0, fam.sample([3]).init_state())[0].isfinite().all()
