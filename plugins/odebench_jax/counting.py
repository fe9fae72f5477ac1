"""How the counts of a compiled program reach a SolveStats, for the programs a harness runs:
the trainer's value-and-grad (through a tally) and the programs a task compiles itself
(``counted_jit``).  Both ask odebench's backends (``returns_counts``) for their counts as
data (``counts.py``) and add them after the program ran, off the clock; other backends count
inside their programs, and the harness waits for their callbacks.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax

from odebench.errors import InvalidInputError, OdebenchError
from odebench.protocols import BoundOdeint
from odebench.specs import SolveStats

from .counts import collect, warn_traced_failure


class Tallied:
    """A bound odeint whose every solve sends its counts to the cotangent of ``tally``.  It reads
    as the BoundOdeint it wraps (solver, tolerances, stats, ...)."""

    def __init__(self, odeint: BoundOdeint, tally_in) -> None:
        self.odeint, self.tally = odeint, tally_in

    def __getattr__(self, name):
        return getattr(self.odeint, name)

    def __call__(self, func: Callable, y0, t, *args, **kwargs):
        return self.odeint(func, y0, t, *args, tally=self.tally, **kwargs)


def tallied_value_and_grad(loss_fn: Callable, odeint: BoundOdeint):
    """``loss_fn(params, batch, odeint)``'s value and gradient, jitted, as a function of
    (params, batch, tally) -> (value, (grads, tally_grad)).

    The tally's gradient is the counts of every solve the gradient passes through, forward and
    backward: cotangents add up, so the solves a loss makes inside a ``vmap``, a ``scan`` or a
    ``checkpoint`` of its own are counted as well as those at its top level.  A solve the
    gradient does not pass through (its value unused, or under ``stop_gradient``) sends none."""

    def loss(params, batch, tally_in):
        return loss_fn(params, batch, Tallied(odeint, tally_in))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 2)))


def settle(backend, stats: SolveStats, counts=None, tally_grad=None) -> None:
    """Add a program's counts to stats.  A failed solve (its values are NaN) is reported as a
    harness reports a failure inside jit: ``backend.last_error`` and a RuntimeWarning."""
    try:
        collect(stats, counts, tally_grad)
    except OdebenchError as err:
        warn_traced_failure(backend, err)


class _Returning:
    """A bound odeint that asks each solve for its SolveCounts and keeps them in ``counts``."""

    def __init__(self, odeint: BoundOdeint) -> None:
        self.odeint, self.counts = odeint, []

    def __getattr__(self, name):
        return getattr(self.odeint, name)

    def __call__(self, func: Callable, y0, t, *args, **kwargs):
        ys, counts = self.odeint(func, y0, t, *args, return_counts=True, **kwargs)
        self.counts.append(counts)
        return ys


def counted_jit(fn: Callable, odeint: Optional[BoundOdeint]) -> Callable:
    """``jax.jit(lambda *args: fn(*args, odeint))`` that adds the counts of its solves to
    ``odeint.stats`` after each call: for the programs a task compiles itself (an evaluation).

    With a backend that returns its counts as data, the program returns each solve's
    SolveCounts beside fn's result and they are added after the call (a failed solve warns and
    sets ``backend.last_error``: its values are NaN).  ``fn`` must call odeint at its top
    level: a solve inside a ``vmap`` or ``scan`` of fn's own cannot hand its counts out of it,
    and the call says so (InvalidInputError); such a solve is called with
    ``return_counts=True`` and its counts returned through the transformation.  Any other
    backend counts inside the program: the call waits for its callbacks.  ``odeint`` None (a
    model without an ODE): fn gets None."""
    if odeint is None or not odeint.backend.returns_counts:
        plain = jax.jit(lambda *args: fn(*args, odeint))

        def call_plain(*args):
            out = plain(*args)
            jax.effects_barrier()
            return out

        return call_plain

    def traced(*args):
        bound = _Returning(odeint)
        return fn(*args, bound), bound.counts

    returning = jax.jit(traced)

    def call(*args):
        try:
            out, counts = returning(*args)
        except jax.errors.UnexpectedTracerError as err:
            raise InvalidInputError(
                f"a solve with {odeint.backend.name} ran inside a transformation (vmap, scan, ...) of the "
                "counted function, so its counts could not leave it: call odeint at the function's top level, "
                "or with return_counts=True and return the counts through the transformation") from err
        settle(odeint.backend, odeint.stats, counts)
        return out

    return call
