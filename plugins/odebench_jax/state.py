"""Presenting a solve's inputs to the JAX integrator (in Python, before anything is traced):
times in the control dtype, the state (an array or a tuple of arrays) as one flat vector.

``check_inputs`` is the front door of every JAX solve, odebench's backends' and the
peers' (diffrax, jax.experimental.ode) alike.  The checks and their messages are
odebench.solve's, shared with torch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from odebench.errors import InvalidInputError, NonFiniteStateError
from odebench.solve import check_outputs, check_state, check_times, slices_of


def is_tracer(x) -> bool:
    """Whether x is traced (its value is not known yet).  ``jax.core.Tracer`` is one of the
    names jax.core still exports on purpose (jax 0.10 removed its internals from there)."""
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
        return isinstance(other, FlatFunc) and self.func == other.func and self.layout == other.layout


@dataclass(frozen=True)
class TwoArgs:
    """func(t, y) called as func(t, y, args): the signature odebench accepts when args is None.
    Equal to another wrapper of the same func, so repeated calls reuse the compiled program."""

    func: Callable

    def __call__(self, t, y, args):
        return self.func(t, y)


def takes_two_arguments(func: Callable) -> bool:
    """Whether func's signature is (t, y): exactly two positional parameters, no *args."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # builtins and other callables without a signature
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 2 and not any(p.kind == p.VAR_POSITIONAL for p in params)


def hoist_closure(func: Callable, t, y, args):
    """(func, args) with the traced arrays func closes over moved into its args.

    A custom_vjp must see every array it differentiates as an input: a dynamics that closes
    over arrays traced by an outer ``jax.grad`` would leak them (UnexpectedTracerError).
    ``jax.closure_convert`` finds them; the traced ones become a second part of args, so their
    gradients are exactly those of arrays passed through args.  Concrete arrays stay constants,
    and a function that closes over nothing traced is returned as it is.
    """
    converted, consts = jax.closure_convert(func, t, y, args)
    traced = [i for i, c in enumerate(consts) if is_tracer(c)]
    if not traced:
        return func, args
    fixed = [None if i in traced else c for i, c in enumerate(consts)]

    def hoisted(t, y, packed):
        user_args, values = packed
        merged = list(fixed)
        for i, value in zip(traced, values):
            merged[i] = value
        return converted(t, y, user_args, *merged)

    return hoisted, (args, tuple(consts[i] for i in traced))


def check_function(func: Callable, layout: Layout, args) -> None:
    """func's output structure, shapes and dtypes against y0's, by jax.eval_shape (nothing runs)."""
    dtype = jnp.dtype(layout.dtype)
    t_spec = jax.ShapeDtypeStruct((), dtype)
    y_spec = tuple(jax.ShapeDtypeStruct(s, dtype) for s in layout.shapes)
    try:
        out = jax.eval_shape(func, t_spec, y_spec if layout.is_tuple else y_spec[0], args)
    except TypeError as exc:
        if "positional argument" not in str(exc):
            raise
        raise InvalidInputError(f"func must be callable as func(t, y, args), or func(t, y) when args is None; "
                                f"calling it raised TypeError: {exc}") from None
    check_outputs(out, layout.shapes, dtype, layout.is_tuple, lambda o: hasattr(o, "shape") and hasattr(o, "dtype"),
                  kind="array")


@dataclass(frozen=True, eq=False)
class Inputs:
    """An odeint call's inputs after the checks: ``func(t, y, args)`` with the traced arrays it
    closed over moved into ``args``; y0 in the user's layout (``y0``) and flat (``y0_flat``);
    the times in the control dtype, and as floats when they are concrete (else None)."""

    func: Callable
    args: Any
    layout: Layout
    y0: Any
    y0_flat: Any
    times: Any
    times_list: Optional[list]


def check_inputs(func: Callable, y0, t, args, cdt) -> Inputs:
    """Check an odeint call's inputs and present them to an integrator; bad input raises
    InvalidInputError (NonFiniteStateError for nan/inf in a concrete y0) before anything is
    traced.  ``func(t, y)`` is accepted when args is None."""
    times, times_list = times_of(t, cdt)
    layout, parts = make_state(y0)
    if not callable(func):
        raise InvalidInputError(f"func must be callable as func(t, y, args), got {type(func).__name__}")
    if args is None and takes_two_arguments(func):
        func = TwoArgs(func)
    check_function(func, layout, args)
    state = tuple(parts) if layout.is_tuple else parts[0]
    func, args = hoist_closure(func, jnp.zeros((), parts[0].dtype), state, args)
    y0_flat = layout.flatten(parts)
    if not is_tracer(y0_flat) and not bool(np.all(np.isfinite(np.asarray(y0_flat)))):
        raise NonFiniteStateError("non-finite value (nan/inf) in y0")
    return Inputs(func, args, layout, state, y0_flat, times, times_list)
