"""The one range-check helper behind every CLI error about a setting's value (l2o/checks.py)."""
import math

import pytest

from l2o import checks
from l2o.errors import L2OError
from l2o.meta.schedule import Schedule
from l2o.optimizers import CoordinatewiseLSTM


@pytest.mark.parametrize("call, message", [
    (lambda: checks.integer(0, "schedule.epochs"), "schedule.epochs=0 must be a positive integer."),
    (lambda: checks.integer(True, "seed", low=0), "seed=True must be an integer >= 0."),
    (lambda: checks.integer(6, "optimizer.num_global", 0, 5), "optimizer.num_global=6 must be an integer in 0..5."),
    (lambda: checks.integer(2.0, "threads", allow_none=True), "threads=2.0 must be a positive integer or null."),
    (lambda: checks.number(-1, "schedule.meta_lr", above=0, note=" (paper: 1e-3)"), "schedule.meta_lr=-1 must be a number > 0 (paper: 1e-3)."),
    (lambda: checks.number(2, "guard.lr_factor", above=0, below=1), "guard.lr_factor=2 must be a number in (0, 1)."),
    (lambda: checks.number(1.5, "schedule.meta_lr_decay", above=0, at_most=1), "schedule.meta_lr_decay=1.5 must be a number in (0, 1]."),
    (lambda: checks.number(math.inf, "optimizee.init_std", at_least=0), "optimizee.init_std=inf must be a number >= 0."),
    (lambda: checks.number("x", "divergence_factor", above=1), "divergence_factor='x' must be a number > 1."),
    (lambda: checks.flag("yes", "resume"), "resume='yes' must be true or false."),
])
def test_a_bad_value_is_named_with_what_is_allowed(call, message):
    with pytest.raises(L2OError) as err:
        call()
    assert str(err.value) == message


def test_good_values_pass_through():
    assert checks.integer(3, "k") == 3 and checks.integer(None, "k", allow_none=True) is None
    assert checks.number(0.5, "k", above=0, below=1) == 0.5 and checks.flag(False, "k") is False


def test_the_classes_use_it():
    with pytest.raises(L2OError, match=r"schedule.val_window=0 must be a positive integer"):
        Schedule(val_window=0)
    with pytest.raises(L2OError, match=r"optimizer.preprocess_p=-1 must be a number > 0 or null \(null: no preprocessing\)"):
        CoordinatewiseLSTM(preprocess_p=-1)
