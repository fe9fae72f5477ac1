"""The input checks of every solve, with their messages: one front door for both frameworks.

Each framework converts its arrays to plain Python facts (floats, shapes, dtypes) and calls
these, so a bad tolerance, time grid, y0 or dynamics output gives the same one-line
InvalidInputError from torch and from JAX, before anything runs or is traced.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

from ..errors import InvalidInputError


def check_tolerance(name: str, value: Any) -> float:
    """A tolerance as a float; it must be finite and > 0."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}")
    return x


def check_times(shape: tuple, values: Optional[Sequence[float]], kind: str = "tensor") -> Optional[list[float]]:
    """The output times as floats: 1-D, at least one, finite, strictly monotonic.

    ``values`` is None when the times are not known yet (traced by JAX): only the shape is
    checked then.
    """
    if len(shape) != 1 or shape[0] < 1:
        raise InvalidInputError(f"t must be a 1-D {kind} of at least one time, got shape {tuple(shape)}")
    if values is None:
        return None
    times = [float(x) for x in values]
    if not all(math.isfinite(x) for x in times):
        raise InvalidInputError("t must hold finite times (found nan/inf)")
    diffs = [b - a for a, b in zip(times, times[1:])]
    if diffs and not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
        raise InvalidInputError("t must be strictly increasing or strictly decreasing (no repeats)")
    return times


def check_state(parts: Sequence[Any], is_array: Callable[[Any], bool], is_floating: Callable[[Any], bool],
                kind: str = "tensor") -> None:
    """y0's parts: arrays of the framework sharing one floating dtype."""
    if not parts:
        raise InvalidInputError(f"y0 must be a {kind} or a non-empty tuple of {kind}s")
    for p in parts:
        if not is_array(p):
            raise InvalidInputError(f"y0 must be a {kind} or a tuple of {kind}s, got {type(p).__name__}")
        if not is_floating(p):
            raise InvalidInputError(f"y0 must have a floating dtype (float32/float64), got {p.dtype}")
    if len({p.dtype for p in parts}) > 1:
        raise InvalidInputError(f"all {kind}s of a tuple y0 must share one dtype")


def check_outputs(out: Any, shapes: Sequence[tuple], dtype: Any, is_tuple: bool, is_array: Callable[[Any], bool],
                  kind: str = "tensor") -> None:
    """The dynamics' output against y0: the same structure, shapes and dtype."""
    n = len(shapes)
    if is_tuple:
        if not isinstance(out, (tuple, list)):
            raise InvalidInputError(f"func must return a tuple of {n} {kind}s like y0, got {type(out).__name__}")
        outs = tuple(out)
        if len(outs) != n:
            raise InvalidInputError(f"func returned {len(outs)} {kind}s, y0 has {n}")
    else:
        outs = (out,)
    for i, (o, shape) in enumerate(zip(outs, shapes)):
        where = f" (element {i})" if is_tuple else ""
        if not is_array(o):
            raise InvalidInputError(f"func must return {kind}s, got {type(o).__name__}{where}")
        if tuple(o.shape) != tuple(shape):
            raise InvalidInputError(f"func returned shape {tuple(o.shape)}{where}, expected y0's shape {tuple(shape)}")
        if o.dtype != dtype:
            raise InvalidInputError(f"func returned dtype {o.dtype}{where}, expected y0's dtype {dtype}")


def parse_bool(what: str, value: Any) -> bool:
    """True/False, or their spellings 1/0, yes/no, on/off (options typed on the command line)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInputError(f"{what} must be true or false, got {value!r}")
