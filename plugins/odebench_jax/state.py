"""Presenting a solve's inputs to the JAX integrator (in Python, before anything is traced):
times in the control dtype, the state (an array or a tuple of arrays) as one flat vector.

The checks and their messages are odebench.solve's, shared with torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from odebench.errors import InvalidInputError
from odebench.solve import check_outputs, check_state, check_times, slices_of


def is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def reject_traced(name: str, value) -> None:
    """Tolerances steer the compiled loop's structure: they must be known when it is traced."""
    if is_tracer(value):
        raise InvalidInputError(f"{name} must be a concrete number (a Python float), not a traced value")


def times_of(t, cdt):
    """(times as a control-dtype array, times as floats or None when traced).

    Concrete times are checked (1-D, finite, strictly monotonic); traced times (t passed as an
    argument of a jitted function) are checked for their shape only.
    """
    if is_tracer(t):
        check_times(tuple(t.shape), None, kind="array")
        return jnp.asarray(t, cdt), None
    arr = np.asarray(t, dtype=np.float64)
    times = check_times(arr.shape, arr.reshape(-1).tolist(), kind="array")
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
        return tuple(slices_of(self.sizes)) if self.is_tuple else None

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
    accepted = (jax.Array, np.ndarray, np.generic, float, int, list)
    arrays = tuple(jnp.asarray(p) if is_tracer(p) or isinstance(p, accepted) else p
                   for p in (tuple(y0) if is_tuple else (y0,)))
    check_state(arrays, lambda p: is_tracer(p) or isinstance(p, jax.Array), lambda p: jnp.issubdtype(p.dtype, jnp.floating),
                kind="array")
    layout = Layout(is_tuple, tuple(tuple(a.shape) for a in arrays), str(arrays[0].dtype))
    return layout, arrays


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
    out = jax.eval_shape(func, t_spec, y_spec if layout.is_tuple else y_spec[0], args)
    check_outputs(out, layout.shapes, dtype, layout.is_tuple, lambda o: hasattr(o, "shape") and hasattr(o, "dtype"),
                  kind="array")
