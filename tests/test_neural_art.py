"""The neural-art optimizee: its losses against direct computations, gradients to the pixels,
the feature networks (seeded random weights, VGG-19 weights from a file), batching, images."""
from __future__ import annotations

import pytest
import torch

from l2o.errors import L2OError
from l2o.images import load_image, load_images, square_crop
from l2o.optimizees.base import split_seeds
from l2o.optimizees.features import FeatureNet
from l2o.optimizees.neural_art import NeuralArt, gram, relative_sq_error, total_variation

CONTENT = {"train": ["skimage:astronaut.png", "skimage:coffee.png"], "val": ["skimage:chelsea.png"],
           "test": ["matplotlib:grace_hopper.jpg", "skimage:camera.png"]}


def tiny_family(**kw) -> NeuralArt:
    features = FeatureNet(kind="random_shallow", seed=0)
    return NeuralArt(CONTENT, "skimage:ihc.png", features, size=kw.pop("size", 16), **kw)


def test_gram_and_losses_match_direct_computation():
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    g = gram(f)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                direct = sum(f[b, i, y, x] * f[b, j, y, x] for y in range(4) for x in range(5)) / 20
                assert torch.allclose(g[b, i, j], direct)
    t = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    for b in range(2):
        assert torch.allclose(relative_sq_error(f, t)[b], ((f[b] - t[b]) ** 2).sum() / (t[b] ** 2).sum())
    img = torch.rand(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    for b in range(2):
        dy = sum((img[b, c, y + 1, x] - img[b, c, y, x]) ** 2 for c in range(3) for y in range(3) for x in range(5)) / 45
        dx = sum((img[b, c, y, x + 1] - img[b, c, y, x]) ** 2 for c in range(3) for y in range(4) for x in range(4)) / 48
        assert torch.allclose(total_variation(img)[b], dy + dx)


def test_loss_is_the_weighted_sum_of_its_terms():
    fam = tiny_family(content_weight=2.0, style_weight=3.0, tv_weight=0.5)
    prob = fam.sample(split_seeds("train", 2))
    x = prob.init_params()
    img = prob.images(x)
    feats = fam.net(img)
    (c,) = fam.net.content_layers
    content = relative_sq_error(feats[c], fam.net(prob.content)[c])
    style = torch.stack([relative_sq_error(gram(feats[l]), gram(fam.net(fam.style_image)[l]).expand(2, -1, -1))
                         for l in fam.net.style_layers]).mean(0)
    expected = 2.0 * content + 3.0 * style + 0.5 * total_variation(img)
    assert torch.allclose(prob.loss(x, 0), expected, rtol=1e-5)
    assert torch.allclose(prob.loss(prob.content.reshape(2, -1), 0),
                          3.0 * torch.stack([relative_sq_error(gram(fam.net(prob.content)[l]),
                                                               gram(fam.net(fam.style_image)[l]).expand(2, -1, -1))
                                             for l in fam.net.style_layers]).mean(0)
                          + 0.5 * total_variation(prob.content), rtol=1e-5)  # content loss 0 at the content image


def test_pixels_get_gradients_and_instances_are_independent():
    fam = tiny_family()
    prob = fam.sample(split_seeds("train", 3))
    x = prob.init_params().requires_grad_(True)
    losses = prob.loss(x, 0)
    (g,) = torch.autograd.grad(losses[1], x)
    assert torch.isfinite(g).all() and g[1].abs().gt(0).float().mean() > 0.99  # every pixel of instance 1
    assert g[0].abs().max() == 0 and g[2].abs().max() == 0


def test_batched_instances_equal_one_by_one():
    fam = tiny_family()
    seeds = split_seeds("test", 3)
    batch = fam.sample(seeds)
    x = batch.init_params()
    for i, seed in enumerate(seeds):
        one = fam.sample([seed])
        assert torch.equal(one.init_params()[0], x[i])
        assert torch.allclose(one.loss(one.init_params(), 0)[0], batch.loss(x, 0)[i], rtol=1e-5)


def test_seeded_crops_come_from_their_split():
    fam = tiny_family()
    train = fam.sample(split_seeds("train", 6))
    test = fam.sample(split_seeds("test", 6))
    assert set(train.content_names) <= {"astronaut.png", "coffee.png"}
    assert set(test.content_names) <= {"grace_hopper.jpg", "camera.png"}
    assert torch.equal(fam.sample(split_seeds("test", 6)).content, test.content)
    assert not torch.equal(test.content[0], test.content[1])


def test_random_feature_network_is_deterministic_for_a_seed():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    a, b = FeatureNet("random_vgg19", seed=3), FeatureNet("random_vgg19", seed=3)
    other = FeatureNet("random_vgg19", seed=4)
    for layer in a.style_layers:
        assert torch.equal(a(x)[layer], b(x)[layer])
    assert not torch.allclose(a(x)["conv1_1"], other(x)["conv1_1"])
    assert "not ImageNet VGG-19" in a.description and "seed 3" in a.description


def test_vgg19_loads_weights_from_a_file(tmp_path):
    gen = torch.Generator().manual_seed(0)
    # a torchvision-style state dict of the layers up to conv2_1 (what the losses below use)
    state = {"features.0.weight": torch.randn(64, 3, 3, 3, generator=gen), "features.0.bias": torch.randn(64, generator=gen),
             "features.2.weight": torch.randn(64, 64, 3, 3, generator=gen), "features.2.bias": torch.randn(64, generator=gen),
             "features.5.weight": torch.randn(128, 64, 3, 3, generator=gen), "features.5.bias": torch.randn(128, generator=gen),
             "classifier.0.weight": torch.randn(2, 2, generator=gen)}
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    net = FeatureNet("vgg19", weights=str(path), content_layers=["conv2_1"], style_layers=["conv1_1", "conv2_1"])
    assert torch.equal(net.layers[0].weight, state["features.0.weight"])
    assert torch.equal(net.layers[5].bias, state["features.5.bias"])
    assert str(path) in net.description and "ImageNet" in net.description
    auto = FeatureNet("auto", weights=str(path), content_layers=["conv2_1"], style_layers=["conv1_1"])
    assert auto.kind == "vgg19"
    del state["features.2.weight"]
    torch.save(state, path)
    with pytest.raises(L2OError, match="not a VGG-19 state dict"):
        FeatureNet("vgg19", weights=str(path), content_layers=["conv2_1"], style_layers=["conv1_1"])
    with pytest.raises(L2OError, match="no such file"):
        FeatureNet("vgg19", weights=str(tmp_path / "missing.pth"))


def test_missing_or_unreadable_image_is_an_error_naming_it(tmp_path):
    with pytest.raises(L2OError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(L2OError, match="broken.jpg.*unreadable"):
        load_images([str(bad)], "optimizee.style")
    with pytest.raises(L2OError, match="nope.png"):
        NeuralArt({**CONTENT, "val": [str(tmp_path / "nope.png")]}, "skimage:ihc.png",
                  FeatureNet("random_shallow"), size=16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(L2OError, match="holds no image files"):
        load_images([str(tmp_path / "empty")], "content")


def test_user_folders_and_crops(tmp_path):
    from PIL import Image

    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{i}.png")
    images = load_images([str(tmp_path)], "content")
    assert [n for n, _ in images] == ["0.png", "1.png"]
    assert images[0][1].shape == (3, 30, 40) and images[0][1][0].min() == 1 and images[0][1][2].max() == 0
    crop = square_crop(images[1][1], 8, 0.5, (1.0, 1.0))
    assert crop.shape == (3, 8, 8) and torch.allclose(crop[2], torch.ones(8, 8))


def test_bad_settings_are_refused():
    with pytest.raises(L2OError, match="kind"):
        FeatureNet("vgg16")
    with pytest.raises(L2OError, match="unknown layer"):
        FeatureNet("random_shallow", content_layers=["conv5_1"])
    with pytest.raises(L2OError, match="size"):
        tiny_family(size=4)
    with pytest.raises(L2OError, match="init"):
        tiny_family(init="zeros")
    with pytest.raises(L2OError, match="every split"):
        NeuralArt({"train": CONTENT["train"], "val": [], "test": CONTENT["test"]}, "skimage:ihc.png",
                  FeatureNet("random_shallow"), size=16)


TINY_ART = ("optimizee.size=16", "optimizee.features.kind=random_shallow", "schedule.num_val=2",
            "schedule.problems_per_epoch=2")


@pytest.mark.slow  # the smoke study (tests/test_study.py) runs the same preset's training and an evaluation with images
def test_presets_run_end_to_end_through_the_clis(tmp_path):
    """l2o-train experiment=neural_art and the three evaluations (64 px, 128 px -> here 16 and 32, new
    style) with their image grids, on a tiny budget."""
    import json

    from conftest import TINY_EVAL, TINY_TRAIN, run_cli

    run_cli("l2o-train", "experiment=neural_art", *TINY_TRAIN, *TINY_ART, cwd=tmp_path)
    ckpt = torch.load(tmp_path / "outputs/neural_art/train/checkpoints/last.pt", weights_only=True)
    assert "random_shallow (seeded random weights" in ckpt["optimizee"]["description"]
    tiny_eval = (*TINY_EVAL, "num_test=2", "chunk_problems=2", "steps=6", "tuning.num_problems=1", "workers=1",
                 "optimizee.features.kind=random_shallow", "gallery.steps=[0,2,6]", "gallery.problems=1")
    root = tmp_path / "outputs/neural_art"
    run_cli("l2o-eval", "experiment=neural_art", "optimizee.size=16", *tiny_eval, cwd=tmp_path)
    run_cli("l2o-eval", "experiment=neural_art", "optimizee.size=32", *tiny_eval, f"hydra.run.dir={root}/eval_128", cwd=tmp_path)
    new = run_cli("l2o-eval", "experiment=neural_art", "optimizee.size=16", "optimizee.style=skimage:brick.png", *tiny_eval,
                  f"hydra.run.dir={root}/eval_newstyle", cwd=tmp_path)
    assert "images.png" in new.stdout
    summary = json.loads((root / "eval_newstyle/summary.json").read_text())
    assert "style brick.png" in summary["optimizee_description"] and "random_shallow" in summary["optimizee_description"]
    gallery = torch.load(root / "eval_128/images.pt", weights_only=True)
    assert gallery["images"]["lstm"].shape == (3, 1, 3, 32, 32) and set(gallery["images"]) == {"lstm", "sgd", "rmsprop", "adam", "nag"}
    assert (root / "eval/images.png").is_file()


def test_gallery_images_are_the_evaluation_trajectories():
    """The image grid reruns each optimizer exactly as the evaluation does: its images at step T
    are the evaluation's final parameters, for a learned net and a tuned baseline."""
    from l2o.evaluation.gallery import collect
    from l2o.evaluation.runners import run_learned, run_torch_optimizer
    from l2o.optimizers import CoordinatewiseLSTM

    torch.manual_seed(0)
    fam = tiny_family()
    net = CoordinatewiseLSTM()
    g = collect(fam, {"lstm": net}, {"adam": torch.optim.Adam}, {"adam": 0.05}, [0, 3, 5], 2)
    prob = fam.sample(split_seeds("test", 2))
    _, learned_final, _ = run_learned(net, prob, 5)
    _, adam_final, _ = run_torch_optimizer(torch.optim.Adam, prob, 5, 0.05)
    assert torch.allclose(g["images"]["lstm"][2], prob.images(learned_final).clamp(0, 1))
    assert torch.allclose(g["images"]["adam"][2], prob.images(adam_final).clamp(0, 1))
    assert torch.allclose(g["images"]["adam"][0], prob.images(prob.init_params()).clamp(0, 1))
    assert not torch.allclose(g["images"]["adam"][1], g["images"]["adam"][2])
    assert g["steps"] == [0, 3, 5] and g["names"] == prob.content_names


def test_batch_norms_fold_into_their_convs_exactly():
    from torch import nn

    from l2o.optimizees.features import CIFAR_CFG, _fold_batch_norms, build_layers

    torch.manual_seed(0)
    body, _ = build_layers(CIFAR_CFG, "max")
    with_bn = nn.Sequential(*[m for layer in body for m in
                              ((layer, nn.BatchNorm2d(layer.out_channels)) if isinstance(layer, nn.Conv2d) else (layer,))])
    for m in with_bn:
        if isinstance(m, nn.BatchNorm2d):   # trained statistics and affine parameters, not the defaults
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    x = torch.randn(3, 3, 32, 32)
    folded = _fold_batch_norms(with_bn.eval())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded) and len(folded) == len(body)
    assert torch.allclose(folded(x), with_bn(x), atol=1e-4)


def test_cifar_features_train_ship_and_load(tmp_path, monkeypatch):
    """`python -m l2o.optimizees.features train` on a tiny image folder: the file it writes is what
    optimizee.features.kind=cifar_vgg loads, with its test accuracy in the description."""
    import numpy as np
    from PIL import Image

    from l2o.optimizees.features import main

    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path / "cache"))
    for split in ("train", "test"):
        for label in range(2):
            folder = tmp_path / "imgs" / split / f"class{label}"
            folder.mkdir(parents=True)
            for k in range(128 if split == "train" else 20):
                Image.fromarray(np.full((32, 32, 3), 200 * label, dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "cifar_vgg.pt"
    main(["train", "--data", str(tmp_path / "imgs"), "--out", str(out), "--epochs", "1", "--lr", "0.01"])
    net = FeatureNet("cifar_vgg", weights=out)
    assert net.description.startswith("cifar_vgg (trained on CIFAR-10, test accuracy ") and "1 epochs" in net.description
    feats = net(torch.rand(2, 3, 64, 64))
    assert set(feats) == {"conv1_1", "conv2_1", "conv2_2", "conv3_1", "conv3_2"} and feats["conv3_2"].shape == (2, 128, 16, 16)
    monkeypatch.setattr("l2o.optimizees.features.CIFAR_WEIGHTS", tmp_path / "not_trained.pt")
    with pytest.raises(L2OError, match="no weights at .*not_trained.pt.*python -m l2o.optimizees.features train"):
        FeatureNet("cifar_vgg")
