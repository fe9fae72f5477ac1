"""What the JAX gradient methods share: the call, its checks, and how counts leave it.

All three (``backprop.py``, ``adjoint.py``) share one call, modelled on torchdiffeq / the torch
backends::

    ys = backend.odeint(func, y0, t, args, solver="dopri5", rtol=1e-7, atol=1e-9, options=None, stats=None)

``func(t, y, args) -> dy``; ``y0`` an array or a tuple of arrays; ``args`` a pytree of arrays
(the parameters).  Gradients flow to ``y0`` and to every inexact leaf of ``args`` (not to t).
It works eagerly and under ``jax.jit`` / ``jax.grad`` / ``jax.value_and_grad`` / ``jax.vmap``.
The result is y at every time of ``t`` stacked on axis 0 (a tuple of such arrays for a tuple
``y0``).

Counts.  The counters are computed inside the compiled loop.  A call that runs eagerly adds
them to ``stats`` (default: a new SolveStats, also ``backend.last_stats``) before odeint
returns; an eager gradient adds the backward counts when its backward runs.  Inside a traced
program (``jax.jit``) nothing can reach a Python object, so the counts leave as data, the way
diffrax returns its statistics (``counts.py``): ``return_counts=True`` returns
``(ys, SolveCounts)``, and ``tally=odebench_jax.tally()`` makes the counts of a differentiated
solve, forward and backward, that input's cotangent.  ``odebench_jax.collect`` adds them to a
SolveStats on the host.  A traced call given neither counts nothing.

Errors.  Bad input (solver name, tolerances, times, y0, func's output shape/dtype, options)
raises before anything is traced, with the torch backends' messages.  Failures found while
integrating (max_steps exceeded, nan/inf in the state, step-size underflow) raise the same
odebench errors (MaxStepsError, NonFiniteStateError) when the call runs eagerly -- also inside
an eager jax.grad.  Inside jit nothing can raise: the solution (and the gradients) is returned
as NaN, and the returned counts carry the failure, which ``collect`` raises.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from odebench.errors import InvalidInputError
from odebench.solve import GradientBackend, SolveSetup
from odebench.specs import SolveStats

from .config import SolveConfig, make_config, numbers
from .counts import FORWARD_FIELDS, TALLY_FIELDS, SolveCounts, check_tally, record_concrete
from .dtypes import control_dtype
from .state import FlatFunc, check_inputs, reject_traced


class Problem:
    """One odeint call, checked: the setup (tableau, tolerances, options), times, state layout, function."""

    def __init__(self, setup: SolveSetup, func, y0, t, args) -> None:
        self.setup = setup
        self.tableau, self.options = setup.tableau, setup.options
        self.cdt = control_dtype()
        inputs = check_inputs(func, y0, t, args, self.cdt)
        self.times, self.times_list, self.layout = inputs.times, inputs.times_list, inputs.layout
        self.y0_flat, self.func, self.args = inputs.y0_flat, inputs.func, inputs.args
        self.f = FlatFunc(self.func, self.layout)

    def config(self, driver="while", length=0, options=None, slices="state") -> SolveConfig:
        return make_config(self.tableau, self.options if options is None else options,
                           self.layout.slices if slices == "state" else slices, driver, length)

    @property
    def nums(self):
        return numbers(self.setup.rtol, self.setup.atol, self.options, self.cdt)


def _count_options(kwargs: dict):
    """(return_counts, tally) popped from an odeint call's keywords, checked; the tally is a
    zero array nobody reads when the caller gives none (the solves take one either way)."""
    returned = kwargs.pop("return_counts", False)
    tally = kwargs.pop("tally", None)
    if not isinstance(returned, bool):
        raise InvalidInputError(f"return_counts must be True or False, got {returned!r}")
    if tally is None:
        return returned, jnp.zeros(len(TALLY_FIELDS), jnp.float32)
    check_tally(tally)
    return returned, tally


class JaxBackend(GradientBackend):
    """Base: the shared call (solver lookup and the checks are odebench.solve's).

    ``last_error``: the odebench error of the last solve that failed eagerly (it was raised),
    or that a harness collected from a program's counts."""

    framework = "jax"
    returns_counts = True

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.last_error: Optional[Exception] = None

    def setup(self, solver, rtol, atol, options) -> SolveSetup:
        reject_traced("rtol", rtol)
        reject_traced("atol", atol)
        return super().setup(solver, rtol, atol, options)

    def _odeint(self, func, y0, t, args, setup: SolveSetup, stats: SolveStats, **method_kwargs):
        problem = Problem(setup, func, y0, t, args)
        returned, tally = _count_options(method_kwargs)
        self._check_method_kwargs(method_kwargs)
        ys, counts, status, info = self._run(problem, stats, tally, **method_kwargs)
        max_steps = problem.options["max_steps"]
        record_concrete(self, stats, FORWARD_FIELDS, counts, status, info, max_steps)
        ys = problem.layout.unflatten_trajectory(ys)
        return (ys, SolveCounts.of(counts, status, info, max_steps)) if returned else ys

    def _check_method_kwargs(self, kwargs) -> None:
        if kwargs:
            raise InvalidInputError(f"{self.name}.odeint got unexpected keyword(s) {', '.join(sorted(kwargs))}")

    def _run(self, problem: Problem, stats: SolveStats, tally, **kwargs):
        """(ys, counts, status, info) of the forward solve, a ``jax.custom_vjp`` of (y0, args,
        ..., tally): its backward adds the solve's counts to ``stats`` when it runs eagerly and
        returns them as the tally's cotangent (``counts.tally_cotangent``)."""
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
