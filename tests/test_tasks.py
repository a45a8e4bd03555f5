"""The task suite: real models trained by an ordinary loop, every optimizer through the same loop,
learned ones through LearnedOptimizer; l2o-eval task=NAME end to end."""
import json
import math

import pytest
import torch
from torch import nn

from conftest import SHARED_DATA, run_cli
from l2o.optimizers import CoordinatewiseLSTM, LearnedOptimizer
from l2o.tasks import CharLM, ImageClassification, Task, train
from l2o.tasks.models import MLP, CharLSTM, MnistCNN, ResNet


class Line(Task):
    """y = 2x on scalars: the loop's bookkeeping, without data."""

    def model(self, seed):
        return nn.Linear(1, 1, bias=False)

    def batch(self, step, gen):
        x = torch.randn(self.batch_size, 1, generator=gen)
        return x, 2 * x

    def loss(self, output, target):
        return (output - target).pow(2).mean()

    def test_metrics(self, model):
        return {"test_loss": float((model.weight.detach() - 2).pow(2))}


def test_train_records_the_loss_before_every_step_and_after_the_last():
    run = train(Line(steps=20, batch_size=8), lambda groups, model: torch.optim.SGD(groups), seed=0, lr=0.1)
    assert run.losses.shape == (21,) and run.losses[-1] < run.losses[0] / 10 and math.isfinite(run.step_ms)
    assert run.metrics["test_loss"] < 0.1 and run.state_bytes_per_param == 0   # plain SGD keeps no state
    again = train(Line(steps=20, batch_size=8), lambda groups, model: torch.optim.SGD(groups), seed=0, lr=0.1)
    assert torch.equal(run.losses, again.losses)   # a seed fixes the model and the minibatches


def test_a_diverging_run_stops_and_is_nan_from_there():
    run = train(Line(steps=20, batch_size=8), lambda groups, model: torch.optim.SGD(groups), seed=0, lr=10.0)
    first_nan = int(torch.isnan(run.losses).nonzero()[0])
    assert 1 <= first_nan < 21 and torch.isnan(run.losses[first_nan:]).all() and math.isnan(run.metrics["test_loss"])


def test_param_groups_put_weight_decay_on_weights_only_and_scale_the_heads_lr():
    task = Line(weight_decay=0.01, head="head", head_lr=0.1)
    model = MLP(4, hidden=[3])
    groups = {(g["lr"], g["weight_decay"]): sorted(id(p) for p in g["params"]) for g in task.param_groups(model, 0.5)}
    weight, bias, head_w, head_b = model.body[1].weight, model.body[1].bias, model.head.weight, model.head.bias
    assert groups == {(0.5, 0.01): [id(weight)], (0.5, 0.0): [id(bias)], (0.05, 0.01): [id(head_w)],
                      (0.05, 0.0): [id(head_b)]}
    assert len(Line().param_groups(model, 0.5)) == 1
    # a learned optimizer takes the same groups, names and kinds from the model
    opt = LearnedOptimizer(task.param_groups(model, 1.0), net=CoordinatewiseLSTM(), model=model)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0, 0.01, 0.0]


def test_the_models_take_their_inputs():
    assert MnistCNN()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in MnistCNN().parameters()) == 1_199_882   # the PyTorch example's
    assert ResNet()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert MLP(12, hidden=[], num_classes=3)(torch.zeros(2, 3, 2, 2)).shape == (2, 3)   # logistic regression
    assert CharLSTM(vocab=7)(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 7)


def test_char_lm_windows_predict_the_next_character(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("abcdefghij" * 40)
    task = CharLM(corpus=str(corpus), seq_len=5, model=lambda vocab: CharLSTM(vocab), batch_size=4, test_windows=3)
    x, y = task.batch(0, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 5) and torch.equal((x + 1) % 10, y)   # the text's next letters
    assert task.vocab == 10 and len(task.test_codes) == 40
    assert set(task.test_metrics(task.model(0))) == {"test_loss", "test_accuracy", "test_bits_per_char"}
    pydoc = CharLM(model=lambda vocab: CharLSTM(vocab))
    assert len(pydoc.train_codes) > 400_000 and pydoc.vocab > 80


def test_image_classification_normalises_and_holds_out_test_images():
    from torchvision.datasets import MNIST

    task = ImageClassification(MNIST(SHARED_DATA / "mnist", train=True), MNIST(SHARED_DATA / "mnist", train=False),
                               model=lambda num_classes, in_features: MLP(in_features, num_classes=num_classes), flat=True,
                               test_limit=100, batch_size=16)
    assert task.x.shape == (60_000, 1, 28, 28) and abs(float(task.x.mean())) < 1e-3 and task.xt.shape[0] == 100
    x, y = task.batch(0, torch.Generator().manual_seed(0))
    assert x.shape == (16, 1, 28, 28) and task.num_classes == 10
    metrics = task.test_metrics(task.model(0))
    assert metrics["test_loss"] == pytest.approx(math.log(10), abs=0.3) and 0 <= metrics["test_accuracy"] <= 1


def test_eval_on_a_task_through_the_cli(tmp_path):
    from conftest import REPO

    out = tmp_path / "eval"
    proc = run_cli("l2o-eval", "task=logistic", "protocol=tasks", f"checkpoint={REPO / 'l2o/pretrained/mnist_stable_rnnprop.pt'}",
                   "task.steps=8", "num_test=2", "tuning.num=2", "progress=false", f"hydra.run.dir={out}", cwd=tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["optimizers"]) == {"rnnprop", "adam", "adamw", "sgdm"} and summary["steps"] == 8
    for name, row in summary["optimizers"].items():
        assert {"test_loss", "test_accuracy", "step_ms", "state_bytes_per_param"} <= set(row), name
    assert summary["optimizers"]["adam"]["state_bytes_per_param"] == pytest.approx(8, rel=0.01)   # m and v in fp32
    assert summary["optimizers"]["rnnprop"]["lr"] is None and "| rnnprop | learned |" in proc.stdout
    tuning = json.loads((out / "tuning.json").read_text())
    assert tuning["metric"] == "tail" and set(tuning["selected"]) == {"adam", "adamw", "sgdm"}

    # a second learned optimizer on the same task: the baselines (tuning and runs) come from the first
    again = tmp_path / "again"
    proc = run_cli("l2o-eval", "task=logistic", "protocol=tasks", f"checkpoint={REPO / 'l2o/pretrained/mnist_stable_time.pt'}",
                   "name=lstm_time", "task.steps=8", "num_test=2", "tuning.num=2", "progress=false", f"baselines_from={out}",
                   f"hydra.run.dir={again}", cwd=tmp_path)
    assert "baselines adam, adamw, sgdm reused from" in proc.stderr
    second = json.loads((again / "summary.json").read_text())
    assert set(second["optimizers"]) == {"lstm_time", "adam", "adamw", "sgdm"}
    for name in ("adam", "adamw", "sgdm"):
        assert second["optimizers"][name]["final_loss"] == summary["optimizers"][name]["final_loss"]
        assert second["optimizers"][name]["lr"] == summary["optimizers"][name]["lr"]
    proc = run_cli("l2o-eval", "task=logistic", "protocol=tasks", f"checkpoint={REPO / 'l2o/pretrained/mnist.pt'}",
                   "task.steps=9", "num_test=2", "tuning.num=2", "progress=false", f"baselines_from={out}",
                   f"hydra.run.dir={tmp_path / 'other'}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "evaluated different task" in proc.stderr and not (tmp_path / "other" / "summary.json").exists()


@pytest.mark.parametrize("override, words", [
    ("+task.model.depth=3", "task.model: the task's model does not build or does not run on its minibatches (TypeError"),
    ("task.model._target_=torch.nn.Conv2d", "task.model: the task's model does not build"),
])
def test_a_task_model_that_does_not_build_is_an_error_before_any_run(tmp_path, override, words):
    from conftest import REPO

    out = tmp_path / "eval"
    proc = run_cli("l2o-eval", "task=logistic", "protocol=tasks", f"checkpoint={REPO / 'l2o/pretrained/mnist_stable_rnnprop.pt'}",
                   override, "task.steps=4", "num_test=1", "tuning.num=2", "progress=false", f"hydra.run.dir={out}",
                   cwd=tmp_path, check=False)
    assert proc.returncode != 0 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "partial").exists() and not (out / "summary.json").exists()
