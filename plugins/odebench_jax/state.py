"""Checking a solve's inputs (in Python, before anything is traced) and presenting the state
(an array or a tuple of arrays) to the integrator as one flat vector.

The messages are the torch plugin's, so a user gets the same error from either framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from odebench.errors import InvalidInputError


def is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_tolerance(name: str, value) -> float:
    if is_tracer(value):
        raise InvalidInputError(f"{name} must be a concrete number (a Python float), not a traced value")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}")
    return x


def check_times(t, cdt):
    """(times as a control-dtype array, times as floats or None when traced).

    Concrete times must be 1-D, finite and strictly monotonic (checked here); traced times
    (t passed as an argument of a jitted function) are used as they are, unchecked.
    """
    if is_tracer(t):
        if t.ndim != 1 or t.shape[0] < 1:
            raise InvalidInputError(f"t must be a 1-D array of at least one time, got shape {tuple(t.shape)}")
        return jnp.asarray(t, cdt), None
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1:
        raise InvalidInputError(f"t must be a 1-D array of at least one time, got shape {tuple(arr.shape)}")
    times = [float(x) for x in arr.tolist()]
    if not all(math.isfinite(x) for x in times):
        raise InvalidInputError("t must hold finite times (found nan/inf)")
    diffs = [b - a for a, b in zip(times, times[1:])]
    if diffs and not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
        raise InvalidInputError("t must be strictly increasing or strictly decreasing (no repeats)")
    return jnp.asarray(np.asarray(t), cdt), times


@dataclass(frozen=True)
class Layout:
    """The shapes of the user's state: an array, or a tuple of arrays sharing one dtype."""

    is_tuple: bool
    shapes: tuple
    dtype: str

    @property
    def sizes(self) -> list:
        return [int(np.prod(s, dtype=np.int64)) for s in self.shapes]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    @property
    def slices(self) -> Optional[tuple]:
        """Per-array slices of the flat state (for a mixed norm); None for a single array."""
        if not self.is_tuple:
            return None
        out, start = [], 0
        for n in self.sizes:
            out.append((start, start + n))
            start += n
        return tuple(out)

    def flatten(self, parts):
        if not self.is_tuple:
            return jnp.reshape(parts[0], (-1,))
        return jnp.concatenate([jnp.reshape(p, (-1,)) for p in parts])

    def unflatten(self, flat):
        """A flat state -> the user's layout (an array or a tuple of arrays)."""
        if not self.is_tuple:
            return jnp.reshape(flat, self.shapes[0])
        out, start = [], 0
        for n, shape in zip(self.sizes, self.shapes):
            out.append(jnp.reshape(flat[start:start + n], shape))
            start += n
        return tuple(out)

    def unflatten_trajectory(self, ys):
        """[T, flat] -> [T, ...] or a tuple of such arrays."""
        T = ys.shape[0]
        if not self.is_tuple:
            return jnp.reshape(ys, (T,) + tuple(self.shapes[0]))
        out, start = [], 0
        for n, shape in zip(self.sizes, self.shapes):
            out.append(jnp.reshape(ys[:, start:start + n], (T,) + tuple(shape)))
            start += n
        return tuple(out)


def make_state(y0):
    """(Layout, the parts as jax arrays) after checking y0."""
    is_tuple = isinstance(y0, (tuple, list))
    parts = tuple(y0) if is_tuple else (y0,)
    if not parts:
        raise InvalidInputError("y0 must be an array or a non-empty tuple of arrays")
    arrays = []
    for p in parts:
        if not (is_tracer(p) or isinstance(p, (jax.Array, np.ndarray, np.generic, float, int, list))):
            raise InvalidInputError(f"y0 must be an array or a tuple of arrays, got {type(p).__name__}")
        a = jnp.asarray(p)
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise InvalidInputError(f"y0 must have a floating dtype (float32/float64), got {a.dtype}")
        arrays.append(a)
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) > 1:
        raise InvalidInputError("all arrays of a tuple y0 must share one dtype")
    layout = Layout(is_tuple, tuple(tuple(a.shape) for a in arrays), str(arrays[0].dtype))
    return layout, tuple(arrays)


@dataclass(frozen=True, eq=False)
class FlatFunc:
    """f(t, y_flat, args) -> dy_flat around the user's func(t, y, args).

    Hashable by (func, layout), so a repeated call with the same function reuses the
    compiled program (it is a static argument of the jitted integrator).
    """

    func: Callable
    layout: Layout

    def __call__(self, t, y, args):
        return self.layout.flatten(self._outputs(self.func(t, self.layout.unflatten(y), args)))

    def _outputs(self, out):
        return tuple(out) if self.layout.is_tuple else (out,)

    def __hash__(self):
        return hash((self.func, self.layout))

    def __eq__(self, other):
        return isinstance(other, FlatFunc) and self.func is other.func and self.layout == other.layout


def check_function(func: Callable, layout: Layout, args) -> None:
    """func's output structure, shapes and dtypes against y0's, by jax.eval_shape (nothing runs)."""
    dtype = jnp.dtype(layout.dtype)
    t_spec = jax.ShapeDtypeStruct((), dtype)
    y_spec = tuple(jax.ShapeDtypeStruct(s, dtype) for s in layout.shapes)
    y_spec = y_spec if layout.is_tuple else y_spec[0]
    out = jax.eval_shape(func, t_spec, y_spec, args)
    n = len(layout.shapes)
    if layout.is_tuple:
        if not isinstance(out, (tuple, list)):
            raise InvalidInputError(f"func must return a tuple of {n} arrays like y0, got {type(out).__name__}")
        outs = tuple(out)
        if len(outs) != n:
            raise InvalidInputError(f"func returned {len(outs)} tensors, y0 has {n}")
    else:
        outs = (out,)
    for i, (o, shape) in enumerate(zip(outs, layout.shapes)):
        where = f" (element {i})" if layout.is_tuple else ""
        if not hasattr(o, "shape") or not hasattr(o, "dtype"):
            raise InvalidInputError(f"func must return arrays, got {type(o).__name__}{where}")
        if tuple(o.shape) != tuple(shape):
            raise InvalidInputError(f"func returned shape {tuple(o.shape)}{where}, expected y0's shape {tuple(shape)}")
        if o.dtype != dtype:
            raise InvalidInputError(f"func returned dtype {o.dtype}{where}, expected y0's dtype {dtype}")
