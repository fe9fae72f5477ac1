"""The trainer's programs with the counts returned as data, not through the host callback.

odebench's JAX backends export a traced solve's counts through a host callback by default,
about 0.23 ms per solve on CPU (README, "cost per evaluation"), which the harness would time as
part of every training step while the peers' programs are timed without theirs.  For those
backends (``returns_counts``) the trainer instead traces the task's loss with a bound odeint
that asks each solve for its counts as outputs and sends the backward counts to a tally's
cotangent (``counts.py``); the programs return them and :func:`settle` adds them to the
SolveStats after the clock.  A task opts in with ``counts_as_outputs = True`` on its problem:
its loss calls odeint outside any transformation of its own (a solve inside a ``vmap`` or
``scan`` of the loss would leak its counts out of that transformation, which JAX reports only
when the compiled program runs).  Other tasks keep the callback programs.
"""

from __future__ import annotations

from typing import Callable

import jax

from odebench.errors import OdebenchError
from odebench.protocols import BoundOdeint
from odebench.specs import SolveStats

from .counts import collect, warn_traced_failure

def returns_counts(problem, odeint) -> bool:
    """Whether the trainer takes the counts as outputs: the backend can return them and the
    task says its loss calls odeint at its top level."""
    return bool(odeint is not None and odeint.backend.returns_counts
                and getattr(problem, "counts_as_outputs", False))


class ReturningOdeint:
    """A bound odeint for one trace: each solve's SolveCounts is kept in ``counts``, its
    backward counts go to the cotangent of ``tally``.  It reads as the BoundOdeint it wraps."""

    def __init__(self, odeint: BoundOdeint, tally_in) -> None:
        self.odeint, self.tally, self.counts = odeint, tally_in, []

    def __getattr__(self, name):  # backend, solver, rtol, atol, options, stats
        return getattr(self.odeint, name)

    def __call__(self, func: Callable, y0, t, *args, **kwargs):
        ys, counts = self.odeint(func, y0, t, *args, return_counts=True, tally=self.tally, **kwargs)
        self.counts.append(counts)
        return ys


def jitted_returning(loss_fn: Callable, odeint: BoundOdeint) -> tuple:
    """(loss alone, value_and_grad of the loss), jitted, each taking (params, batch, tally):
    ``loss -> (value, counts)``, ``grad -> ((value, counts), (grads, tally_grad))``."""

    def loss(params, batch, tally_in):
        bound = ReturningOdeint(odeint, tally_in)
        return loss_fn(params, batch, bound), bound.counts

    def loss_and_grad(params, batch, tally_in):
        return jax.value_and_grad(loss, argnums=(0, 2), has_aux=True)(params, batch, tally_in)

    return jax.jit(loss), jax.jit(loss_and_grad)


def settle(backend, stats: SolveStats, counts, tally_grad=None) -> None:
    """Add a program's returned counts to stats.  A failed solve is reported as the callback
    reports it inside jit (the values are NaN): ``backend.last_error`` and a RuntimeWarning."""
    try:
        collect(stats, counts, tally_grad)
    except OdebenchError as err:
        warn_traced_failure(backend, err)
