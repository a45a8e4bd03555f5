"""Shipping a trained optimizer: `python -m l2o.pretrained export` keeps φ and can change deployment
settings that hold no weights (a warm-up the net was not meta-trained with), recording them."""
import subprocess
import sys

import pytest
import torch

import l2o.pretrained
from l2o.errors import L2OError
from l2o.optimizers.files import load_checkpoint, net_from_checkpoint, payload
from l2o.optimizers.mlp_lopt import MLPLOpt


@pytest.fixture
def trained(tmp_path, monkeypatch):
    monkeypatch.setattr(l2o.pretrained, "HERE", tmp_path / "shipped")
    (tmp_path / "shipped").mkdir()
    torch.manual_seed(0)
    path = tmp_path / "best.pt"
    torch.save(payload(MLPLOpt(output_scale=0.01, fan_in_ref=64), optimizee={"_target_": "x"}), path)
    return path


def test_export_keeps_phi_and_records_deployment_settings(trained):
    out = l2o.pretrained.export(str(trained), "general", "note", {"warmup": 30})
    shipped, original = load_checkpoint(out), load_checkpoint(trained)
    assert shipped["optimizer"] == {**original["optimizer"], "warmup": 30}
    assert shipped["pretrained"] == {"name": "general", "note": "note", "settings": {"warmup": 30}}
    for key, value in original["optimizer_state"].items():
        assert torch.equal(shipped["optimizer_state"][key], value)
    assert net_from_checkpoint(shipped).warmup == 30
    plain = load_checkpoint(l2o.pretrained.export(str(trained), "plain"))
    assert plain["optimizer"] == original["optimizer"] and "settings" not in plain["pretrained"]


@pytest.mark.parametrize("settings, message", [({"bogus": 1}, "unexpected keyword argument 'bogus'"),
                                               ({"hidden": [8]}, "size mismatch"),
                                               ({"_target_": "os.system"}, "not a deployment setting")])
def test_export_refuses_settings_that_do_not_fit_and_writes_nothing(trained, settings, message):
    with pytest.raises(L2OError, match=message):
        l2o.pretrained.export(str(trained), "general", "", settings)
    assert not list(l2o.pretrained.HERE.iterdir())


def test_export_command_line_names_a_bad_setting(trained):
    run = subprocess.run([sys.executable, "-m", "l2o.pretrained", "export", str(trained), "x", "--set", "warmup"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "'warmup' is not KEY=VALUE" in run.stderr
