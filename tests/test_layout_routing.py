"""Parameter layout with kinds (one builder for optimizee specs and nn.Modules) and routing."""
import pytest
import torch
from torch import nn

from l2o.checkpoint import load_checkpoint, net_from_checkpoint, save_checkpoint
from l2o.errors import L2OError
from l2o.layout import Layout, module_layout
from l2o.optimizees import MLPClassifier
from l2o.optimizers import CoordinatewiseLSTM, LearnedOptimizer, Routed


class _Data:  # the smallest MNIST-shaped dataset MLPClassifier accepts
    data = torch.zeros(10, 28, 28, dtype=torch.uint8)
    targets = torch.tensor([3, 1, 4, 0, 5, 9, 2, 6, 8, 7])  # every class once, not ordered by class


def _lstm(seed, **kw):
    torch.manual_seed(seed)
    net = CoordinatewiseLSTM(hidden_size=6, preprocess_p=10.0, output_scale=0.1, **kw)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net


def _cnn():
    """A small CIFAR-like CNN with batch norm: every parameter kind but pixel."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
                         nn.LayerNorm(5), nn.Linear(5, 2))


def test_layout_of_a_module_equals_the_layout_of_the_equivalent_optimizee_spec():
    fam = MLPClassifier(_Data(), hidden=[20], batch_size=4, test_part_start=5)
    model = nn.Sequential(nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 10))
    assert module_layout(model) == fam.spec.layout(1)
    assert fam.spec.layout(1).kinds == ("linear_weight", "linear_bias", "linear_weight", "linear_bias")
    assert fam.spec.layout(3).size == 3 * 15_910


def test_module_kinds():
    layout = module_layout(_cnn())
    assert list(zip(layout.names, layout.kinds)) == [
        ("0.weight", "conv_weight"), ("0.bias", "conv_bias"), ("1.weight", "norm_scale"), ("1.bias", "norm_shift"),
        ("4.weight", "linear_weight"), ("4.bias", "linear_bias"), ("5.weight", "norm_scale"), ("5.bias", "norm_shift"),
        ("6.weight", "linear_weight"), ("6.bias", "linear_bias")]
    model = nn.Module()
    model.pixels = nn.Parameter(torch.zeros(3, 8, 8))
    assert module_layout(model).kinds == ("other",)


def test_index_selects_a_subset_instance_major():
    layout = Layout.build([("a", (2,), "other"), ("b", (3,), "other"), ("c", (1,), "other")], num_instances=2)
    assert layout.index([0, 2]).tolist() == [0, 1, 5, 6, 7, 11]
    assert layout.subset([0, 2]).size == 6


PAPER = {"conv": {"match": {"kinds": ["conv_weight", "conv_bias", "norm_scale", "norm_shift"]}},
         "fc": {"match": {"kinds": ["linear_weight", "linear_bias"]}}}
AUTHORS = {"conv": {"match": {"kinds": ["conv_weight"]}}, "rest": {"match": {"kinds": ["*"]}}}


def _routed(rules, seeds=(1, 2)):
    return Routed({name: {**spec, "net": _lstm(seed)} for (name, spec), seed in zip(rules.items(), seeds)})


@pytest.mark.parametrize("rules, expected", [
    (PAPER, {"conv": ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"],
             "fc": ["4.weight", "4.bias", "6.weight", "6.bias"]}),
    (AUTHORS, {"conv": ["0.weight"], "rest": ["0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias",
                                                "6.weight", "6.bias"]}),
])
def test_routing_sends_each_parameter_where_its_rule_says(rules, expected):
    net, layout = _routed(rules), module_layout(_cnn())
    owned = {sub: [layout.names[i] for i in tensors] for sub, tensors in net.route(layout).items()}
    assert owned == expected


def test_routed_update_equals_each_sub_optimizer_on_its_own_coordinates():
    net = _routed(PAPER)
    one = module_layout(_cnn())
    layout = Layout.build(zip(one.names, one.shapes, one.kinds), num_instances=3)
    grad = torch.randn(layout.size)
    state = net.init_state(layout)
    update, new_state = net.update(grad, state, layout)
    for sub, tensors in net.route(layout).items():
        index = layout.index(tensors)
        sub_layout = layout.subset(tensors)
        expected, _ = net.nets[sub].update(grad[index], net.nets[sub].init_state(sub_layout), sub_layout)
        assert torch.equal(update[index], expected)
        assert new_state[sub]["h0"].shape == (6, index.numel())


def test_unmatched_parameter_is_refused_by_name():
    net = _routed({"conv": {"match": {"kinds": ["conv_weight", "conv_bias"]}}}, seeds=(1,))
    with pytest.raises(L2OError, match=r"parameter '1\.weight' \(kind norm_scale\) matches no routing rule"):
        net.init_state(module_layout(_cnn()))
    with pytest.raises(L2OError, match="unknown"):
        Routed({"x": {"match": {"kinds": ["convolution"]}, "net": _lstm(0)}})


def test_parameters_without_their_model_are_refused_with_the_fix():
    """A routed optimizer needs the parameters' kinds: given `model.parameters()` they are all
    'other', and the error says to pass the model."""
    model = _cnn()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.raises(L2OError, match=r"kind other.*give LearnedOptimizer the model"):
        LearnedOptimizer(model.parameters(), net=_routed(PAPER)).step()
    LearnedOptimizer(model, net=_routed(PAPER)).step()


def test_names_rules_and_first_match_wins():
    net = Routed({"head": {"match": {"names": ["6.*"]}, "net": _lstm(1)},
                  "rest": {"match": {"kinds": ["*"]}, "net": _lstm(2)}})
    layout = module_layout(_cnn())
    owned = {sub: [layout.names[i] for i in t] for sub, t in net.route(layout).items()}
    assert owned["head"] == ["6.weight", "6.bias"] and "6.weight" not in owned["rest"]


def test_two_net_checkpoint_round_trips_and_learned_optimizer_applies_the_routing(tmp_path):
    net = _routed(PAPER)
    save_checkpoint(tmp_path / "two.pt", net, optimizee={"name": "x", "config": {}}, schedule={"horizon": 10})
    ckpt = load_checkpoint(tmp_path / "two.pt")
    assert ckpt["optimizer"]["_target_"] == "l2o.optimizers.routed.Routed"
    assert ckpt["optimizer"]["nets"]["fc"]["match"]["kinds"] == ["linear_weight", "linear_bias"]
    loaded = net_from_checkpoint(ckpt)
    assert isinstance(loaded, Routed) and list(loaded.nets) == ["conv", "fc"]
    for a, b in zip(net.parameters(), loaded.parameters()):
        assert torch.equal(a, b)

    torch.manual_seed(0)
    model = _cnn()
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 2, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    LearnedOptimizer(model, checkpoint=tmp_path / "two.pt").step()
    # each parameter moved by its own LSTM's first update of its gradient
    for name, p in model.named_parameters():
        sub = "fc" if name in ("4.weight", "4.bias", "6.weight", "6.bias") else "conv"
        one = Layout.build([(name, p.shape, "other")])
        expected, _ = net.nets[sub].update(grads[name].reshape(-1), net.nets[sub].init_state(one), one)
        torch.testing.assert_close(p.detach() - before[name], expected.view_as(p), rtol=1e-5, atol=1e-7)
