"""The one way a setting's range is checked: each helper returns the value or raises an `L2OError`
naming the key, the bad value and what is allowed (`schedule.epochs=0 must be a positive integer.`),
so every CLI error reads the same and no check is written twice."""
from __future__ import annotations

import math
from typing import Any

from l2o.errors import L2OError


def _fail(key: str, value: Any, what: str, note: str) -> L2OError:
    return L2OError(f"{key}={value!r} must be {what}{note}.")


def integer(value: Any, key: str, low: int = 1, high: int | None = None, *, allow_none: bool = False,
            note: str = "") -> int | None:
    """An int (not a bool) in [low, high]; None too with `allow_none`."""
    if value is None and allow_none:
        return None
    if low == 1 and high is None:
        what = "a positive integer"
    elif high is None:
        what = f"an integer >= {low}"
    else:
        what = f"an integer in {low}..{high}"
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        raise _fail(key, value, what + (" or null" if allow_none else ""), note)
    return value


def number(value: Any, key: str, *, above: float | None = None, at_least: float | None = None,
           below: float | None = None, at_most: float | None = None, allow_none: bool = False,
           note: str = "") -> float | None:
    """A finite int or float (not a bool) within the given bounds; None too with `allow_none`."""
    if value is None and allow_none:
        return None
    lo = f"({above:g}" if above is not None else f"[{at_least:g}" if at_least is not None else None
    hi = f"{below:g})" if below is not None else f"{at_most:g}]" if at_most is not None else None
    if lo and hi:
        what = f"a number in {lo}, {hi}"
    elif lo:
        what = f"a number {'>' if above is not None else '>='} {lo[1:]}"
    elif hi:
        what = f"a number {'<' if below is not None else '<='} {hi[:-1]}"
    else:
        what = "a number"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
    ok = ok and (below is None or value < below) and (at_most is None or value <= at_most)
    if not ok:
        raise _fail(key, value, what + (" or null" if allow_none else ""), note)
    return float(value)


def flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, value, "true or false", "")
    return value
