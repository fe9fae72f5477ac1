"""The JAX gradient methods: backprop through the solver, the adjoint, the seminorm adjoint.

All three share one call, modelled on torchdiffeq / the torch backends::

    ys = backend.odeint(func, y0, t, args, solver="dopri5", rtol=1e-7, atol=1e-9, options=None, stats=None)

``func(t, y, args) -> dy``; ``y0`` an array or a tuple of arrays; ``args`` a pytree of arrays
(the parameters).  Gradients flow to ``y0`` and to every inexact leaf of ``args`` (not to t).
It works eagerly and under ``jax.jit`` / ``jax.grad`` / ``jax.value_and_grad``.  The result is
y at every time of ``t`` stacked on axis 0 (a tuple of such arrays for a tuple ``y0``).

Counts.  The counters are computed inside the compiled loop.  When the call runs eagerly they
are added to ``backend.last_stats`` (a SolveStats; ``stats=`` supplies your own, which then
accumulates) before odeint returns; the adjoint's backward counts when its backward runs.
Under a transformation (jit, or a grad inside jit) they leave the compiled program through a
host callback (``report.py``) whose (zero) result the solution and the gradients depend on:
the forward counts (nfe_forward, steps_accepted, steps_rejected) every
time the forward solve executes, the backward counts (nfe_backward, steps_*_backward) every
time the adjoint's backward executes, added to the SolveStats that was current when the
function was traced (pass ``stats=`` and reset it between iterations to read per-iteration
counts; ``backend.last_stats`` is set to that object by each callback).

``export_counts=False`` leaves that callback out: a traced solve then records no counts and
reports no failure (its solution is NaN all the same); an eager one still records them.  The
export costs about 0.23 ms per solve on CPU -- the callback and the Python dispatch path a
program with a host callback takes (README, "cost per evaluation").

Counts as data, the way diffrax returns its statistics (``counts.py``):
``return_counts=True`` returns ``(ys, SolveCounts)``, the forward counts and status as arrays
of the program, and ``tally=counts.tally()`` makes the backward counts that input's cotangent
(differentiate with respect to it too); each replaces its half of the callback.
``counts.collect(stats, counts, tally_grad)`` adds them to a SolveStats on the host.

Errors.  Bad input (solver name, tolerances, times, y0, func's output shape/dtype, options)
raises before anything is traced, with the torch backends' messages.  Failures found while
integrating (max_steps exceeded, nan/inf in the state, step-size underflow) raise the same
odebench errors (MaxStepsError, NonFiniteStateError) when the call runs eagerly -- also inside
an eager jax.grad.  Inside jit nothing can raise: the solution (and the adjoint's gradients) is
returned as NaN, the error is stored in ``backend.last_error`` by the stats callback and a
RuntimeWarning names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from odebench.errors import InvalidInputError, NonFiniteStateError
from odebench.solve import GradientBackend, SolveSetup, error_for
from odebench.specs import SolveStats

from .config import OK, SolveConfig, make_config, numbers
from .counts import FORWARD_FIELDS, SolveCounts, check_tally, warn_traced_failure
from .dtypes import control_dtype
from .report import report
from .state import (FlatFunc, TwoArgs, check_function, hoist_closure, is_tracer, make_state, reject_traced,
                    takes_two_arguments, times_of)


class Problem:
    """One odeint call, checked: the setup (tableau, tolerances, options), times, state layout, function."""

    def __init__(self, setup: SolveSetup, func, y0, t, args) -> None:
        self.setup = setup
        self.tableau, self.options = setup.tableau, setup.options
        self.cdt = control_dtype()
        self.times, self.times_list = times_of(t, self.cdt)
        self.layout, parts = make_state(y0)
        if not callable(func):
            raise InvalidInputError(f"func must be callable as func(t, y, args), got {type(func).__name__}")
        if args is None and takes_two_arguments(func):
            func = TwoArgs(func)
        check_function(func, self.layout, args)
        func, args = hoist_closure(func, jnp.zeros((), parts[0].dtype), tuple(parts) if self.layout.is_tuple
                                   else parts[0], args)
        self.y0_flat = self.layout.flatten(parts)
        if not is_tracer(self.y0_flat) and not bool(np.all(np.isfinite(np.asarray(self.y0_flat)))):
            raise NonFiniteStateError("non-finite value (nan/inf) in y0")
        self.func = func
        self.args = args
        self.f = FlatFunc(func, self.layout)

    def config(self, driver="while", length=0, options=None, slices="state") -> SolveConfig:
        return make_config(self.tableau, self.options if options is None else options,
                           self.layout.slices if slices == "state" else slices, driver, length)

    @property
    def nums(self):
        return numbers(self.setup.rtol, self.setup.atol, self.options, self.cdt)


def _concrete(x) -> Optional[np.ndarray]:
    """x's value when it is known now (eager, or an eager grad's primal), else None (traced)."""
    if not is_tracer(x):
        return np.asarray(x)
    try:
        flat = jnp.reshape(lax.stop_gradient(x), (-1,))  # a float output's tangent hides its value
        return np.asarray([float(flat[i]) for i in range(flat.shape[0])]).reshape(x.shape)
    except Exception:  # a jit/vmap tracer: its value exists only when the program runs
        return None


def report_counts(backend, stats: SolveStats, fields, counts, status, info, max_steps: int, export: bool = True):
    """Add counts to stats; raise (eager) or record and warn (traced) a failed status.  With
    ``export`` False a traced solve reports nothing (no host callback in the program).

    Traced, the counts leave the program through a host callback, once per solve, and the
    return value is a zero (0-d, or one per vmap element) the caller adds to a result of the
    solve, so the callback runs when, and only when, the solve does.  (None when eager.)"""

    def record(rows):
        """rows: one [3 counts, status, 3 info] list per vmap element, summed into stats."""
        for j, name in enumerate(fields):
            setattr(stats, name, getattr(stats, name) + sum(round(r[j]) for r in rows))
        backend.last_stats = stats
        for r in rows:
            if round(r[3]) != OK:
                return error_for(round(r[3]), *r[4:], max_steps=max_steps)
        return None

    def concrete_rows(counts, status, info):
        return np.concatenate([np.reshape(counts, (-1, 3)), np.reshape(status, (-1, 1)),
                               np.reshape(info, (-1, 3))], axis=1).astype(float).tolist()

    values = [_concrete(x) for x in (counts, status, info)]
    if all(v is not None for v in values):
        err = record(concrete_rows(*values))
        if err is not None:
            backend.last_error = err
            raise err
        return None
    if not export:
        return None

    def callback(packed):
        # Called on the host buffer with the program waiting: plain Python on a few numbers
        # (numpy's per-call overheads were most of the 50 us this took).
        err = record(packed.reshape(-1, 7).tolist())  # one row per vmap element
        if err is not None:
            warn_traced_failure(backend, err)
        return np.zeros(packed.shape[:-1], packed.dtype)

    # One array instead of three: each argument of a host callback costs a transfer.  Counts
    # and status codes are small integers, exact in floats.  A callback whose (zero) result the
    # solve's output depends on is cheaper than jax.debug.callback, and report's primitive
    # cheaper than jax.pure_callback (report.py).
    info = jnp.asarray(info)
    packed = lax.stop_gradient(jnp.concatenate([jnp.asarray(counts).astype(info.dtype),
                                                jnp.asarray(status).astype(info.dtype)[..., None], info], axis=-1))
    return report(callback, packed)


def after(token, value, scale: bool = False):
    """``value`` made to depend on a report's token (a zero), so the count callback runs with it:
    ``value + token``, or with ``scale`` ``value * (1 + token)`` (exactly ``value``), which a
    gradient of ``value`` needs too -- so a forward solve's counts arrive under ``jax.grad``,
    where the solution's value itself is dead code."""
    if token is None:
        return value
    token = jnp.reshape(token, jnp.shape(token) + (1,) * (jnp.ndim(value) - jnp.ndim(token))).astype(value.dtype)
    return value * (1 + token) if scale else value + token


def _count_options(kwargs: dict):
    """(export_counts, return_counts, tally) popped from an odeint call's keywords, checked."""
    export = kwargs.pop("export_counts", True)
    returned = kwargs.pop("return_counts", False)
    tally = kwargs.pop("tally", None)
    for name, value in (("export_counts", export), ("return_counts", returned)):
        if not isinstance(value, bool):
            raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    if tally is not None:
        check_tally(tally)
    return export, returned, tally


@dataclass(frozen=True)
class Outlet:
    """Where a solve's backward counts go: the host callback (``export``), and the cotangent of
    ``tally`` (the caller's, or a zero nobody reads) -- see ``counts.py``."""

    export: bool
    tally: object = None

    def tally_input(self):
        return self.tally if self.tally is not None else jnp.zeros(4, jnp.float32)


class JaxBackend(GradientBackend):
    """Base: the shared call (solver lookup and the checks are odebench.solve's)."""

    framework = "jax"
    returns_counts = True  # declared on GradientBackend: odeint(..., return_counts=True, tally=...)

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.last_error: Optional[Exception] = None

    def setup(self, solver, rtol, atol, options) -> SolveSetup:
        reject_traced("rtol", rtol)
        reject_traced("atol", atol)
        return super().setup(solver, rtol, atol, options)

    def _odeint(self, func, y0, t, args, setup: SolveSetup, stats: SolveStats, **method_kwargs):
        problem = Problem(setup, func, y0, t, args)
        export, returned, tally = _count_options(method_kwargs)
        self._check_method_kwargs(method_kwargs)
        ys, counts, status, info = self._run(problem, stats, Outlet(export and tally is None, tally),
                                             **method_kwargs)
        max_steps = problem.options["max_steps"]
        token = report_counts(self, stats, FORWARD_FIELDS, counts, status, info, max_steps, export and not returned)
        ys = problem.layout.unflatten_trajectory(after(token, ys, scale=True))
        return (ys, SolveCounts.of(counts, status, info, max_steps)) if returned else ys

    def _check_method_kwargs(self, kwargs) -> None:
        if kwargs:
            raise InvalidInputError(f"{self.name}.odeint got unexpected keyword(s) {', '.join(sorted(kwargs))}")

    def _run(self, problem: Problem, stats: SolveStats, outlet: Outlet, **kwargs):
        """(ys, counts, status, info) of the forward solve, its backward's counts sent to ``outlet``."""
        raise NotImplementedError


def args_cotangent(treedef, arg_leaves, diff, grads):
    """The cotangent of args: the gradients on the inexact leaves, float0 zeros elsewhere."""
    out, it = [], iter(grads)
    for i, leaf in enumerate(arg_leaves):
        if i in diff:
            out.append(jnp.reshape(next(it), jnp.shape(leaf)).astype(jnp.result_type(leaf)))
        else:
            out.append(np.zeros(jnp.shape(leaf), dtype=jax.dtypes.float0))
    return treedef.unflatten(out)


def is_inexact(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)
