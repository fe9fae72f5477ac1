"""Checks for the fields of a task's options dataclass (called from its ``__post_init__``).

A ValueError raised here becomes the CLI's one-line error (exit 2) before anything runs.
"""

from __future__ import annotations

import math
import numbers


def positive_int(name: str, value: object) -> int:
    return integer(name, value, 1)


def integer(name: str, value: object, low: int) -> int:
    """An int of at least ``low`` (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return x


def choice(name: str, value: object, allowed: tuple) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value
