"""The MNIST MLP optimizee against torch.nn, batching, dataset swapping and data errors."""
import json
import struct

import pytest
import torch
import torchvision

from conftest import SHARED_DATA, TINY_EVAL, TINY_TRAIN, cli_in_process, run_cli

# the mnist preset on a tiny budget: its horizon curriculum and torch.compile are off
TINY_MNIST = ("experiment=mnist", *TINY_TRAIN, "truncation=constant", "compile=false")
from l2o.optimizees import MLPClassifier
from l2o.optimizees.base import split_seeds

RAW = SHARED_DATA / "mnist" / "MNIST" / "raw"


def write_idx_subset(root, folder="MNIST", n=300, corrupt=False):
    """The first n images and labels of the shared MNIST files, as IDX files under root/folder/raw."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, m in (("train", n), ("t10k", n // 3)):
        images = (RAW / f"{split}-images-idx3-ubyte").read_bytes()[16 : 16 + m * 784]
        labels = (RAW / f"{split}-labels-idx1-ubyte").read_bytes()[8 : 8 + m]
        if corrupt:
            images = images[: len(images) // 2]
        (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, m, 28, 28) + images)
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, m) + labels)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = write_idx_subset(tmp_path_factory.mktemp("mnist"))
    train = torchvision.datasets.MNIST(root, train=True)
    test = torchvision.datasets.MNIST(root, train=False)
    return MLPClassifier(train, test, hidden=[20], batch_size=32, test_part_start=200)


@pytest.mark.parametrize("hidden, activation", [([20], "sigmoid"), ([7, 5], "relu"), ([], "tanh")])
def test_loss_equals_torch_nn_model_with_the_same_weights(tmp_path, hidden, activation):
    root = write_idx_subset(tmp_path)
    fam = MLPClassifier(torchvision.datasets.MNIST(root, train=True), hidden=hidden, activation=activation,
                        batch_size=32, test_part_start=200)
    problem = fam.sample(split_seeds("train", 1))
    theta = torch.randn(1, fam.spec.numel) * 0.3
    p = fam.spec.unflatten(theta)
    act = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[activation]
    layers = []
    for i in range(fam.num_layers):
        w = p[f"{2 * i}.weight"][0]
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(p[f"{2 * i}.bias"][0])
        layers += [lin, act()]
    model = torch.nn.Sequential(*layers[:-1])
    for step in (0, 3):
        x, y = problem.batch(step)
        expected = torch.nn.functional.cross_entropy(model(x[0]), y[0])
        assert torch.allclose(problem.loss(theta, step)[0], expected, atol=1e-6)
    # pixels in [0, 1], images from the training part only
    x, _ = problem.batch(0)
    assert 0 <= x.min() and x.max() <= 1 and x.shape == (1, 32, 784)


def test_batched_instances_equal_instances_run_one_by_one(tiny):
    seeds = split_seeds("train", 4, start=11)
    batch = tiny.sample(seeds)
    theta = batch.init_params().requires_grad_(True)
    losses = batch.loss(theta, 5)
    (grad,) = torch.autograd.grad(losses.sum(), theta)
    for i, seed in enumerate(seeds):
        one = tiny.sample([seed])
        th = one.init_params().requires_grad_(True)
        assert torch.equal(th.detach()[0], theta.detach()[i])
        loss = one.loss(th, 5)
        (g,) = torch.autograd.grad(loss.sum(), th)
        assert torch.allclose(loss[0], losses[i], atol=1e-6) and torch.allclose(g[0], grad[i], atol=1e-6)
    assert not torch.equal(batch.batch(5)[1][0], batch.batch(5)[1][1])  # own minibatch streams


def test_test_problems_use_the_held_out_part_and_full_test_metrics(tiny):
    test = tiny.sample(split_seeds("test", 2))
    assert test.offset == 200 and test.perms.max() < 100
    m = test.test_metrics(test.init_params())
    assert m["test_accuracy"].shape == (2,) and torch.allclose(m["test_loss"], torch.full((2,), 2.3026), atol=1e-2)


def test_swapping_the_dataset_node_by_config(tmp_path):
    root = write_idx_subset(tmp_path / "data", folder="FashionMNIST")
    run = tmp_path / "run"
    proc = run_cli("l2o-train", *TINY_MNIST, "optimizee.test_part_start=200",
                   "optimizee.dataset._target_=torchvision.datasets.FashionMNIST", f"optimizee.dataset.root={root}",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    assert "checkpoint" in proc.stdout
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["optimizee"]["config"]["dataset"]["_target_"] == "torchvision.datasets.FashionMNIST"


@pytest.mark.parametrize("corrupt", [False, True])
def test_missing_or_corrupt_data_root_names_the_path_and_the_fix(tmp_path, corrupt):
    root = write_idx_subset(tmp_path / "bad", corrupt=True) if corrupt else tmp_path / "missing"
    code, err = cli_in_process("l2o-train", *TINY_MNIST, f"optimizee.dataset.root={root}",
                               f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert code == 2, err
    assert str(root) in err and "L2O_DATA_DIR" in err and "optimizee.dataset.root=PATH" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow  # the smoke study trains and evaluates experiment=mnist, ReLU included
def test_mnist_train_and_eval_end_to_end(tmp_path):
    run = tmp_path / "train"
    run_cli("l2o-train", *TINY_MNIST, f"hydra.run.dir={run}", cwd=tmp_path)
    out = tmp_path / "eval"
    proc = run_cli("l2o-eval", "experiment=mnist", "optimizee.activation=relu", "compile=false", f"checkpoint={run}", *TINY_EVAL, "num_test=4", "steps=5",
                   f"hydra.run.dir={out}", cwd=tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimizee"] == "mnist_mlp" and summary["steps"] == 5
    for row in summary["optimizers"].values():
        assert 0 <= row["test_accuracy"] <= 1 and row["test_loss"] > 0
    assert "test accuracy" in proc.stdout


def test_data_files_are_verified_against_their_md5(tmp_path):
    import shutil

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in RAW.iterdir():
        shutil.copy(f, raw / f.name)
    labels = bytearray((raw / "train-labels-idx1-ubyte").read_bytes())
    labels[100] = (labels[100] + 1) % 10  # a silently wrong label: torchvision loads it happily
    (raw / "train-labels-idx1-ubyte").write_bytes(bytes(labels))
    code, err = cli_in_process("l2o-train", *TINY_MNIST, f"optimizee.dataset.root={tmp_path / 'data'}",
                               f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert code == 2 and "train-labels-idx1-ubyte" in err and "a25bea736e30d166cdddb491f175f624" in err
