"""Counts as data: what a solve counted (evaluations, steps, how it ended), as arrays of the program.

A compiled program cannot write to a Python object, so its counts leave the way diffrax's
``sol.stats`` do, as values the program computes (no host callback):

* ``odeint(..., return_counts=True)`` returns ``(ys, SolveCounts)``: the forward counts, the
  status and where a failed solve stopped.  For programs that only solve (an evaluation).
* ``odeint(..., tally=tl)``, with ``tl = tally()`` an input of the differentiated function:
  the cotangent of ``tl`` is the counts of the solve, forward and backward (``TALLY_FIELDS``).
  Differentiate with respect to ``tl`` too and its "gradient" holds them.  Cotangents add up,
  so one tally shared by several solves, by the elements of a ``vmap`` (the tally unbatched)
  or by the iterations of a ``scan`` gets their sum, whatever transformation the solves sit
  in.  A solve the gradient does not pass through (its result unused, or under
  ``stop_gradient``) is not differentiated, so its tally receives nothing.

``collect`` adds either, or both, to a SolveStats on the host and raises the odebench
error of a failed solve.  The values are exact integers below 2**24 in float32 (2**53 in
float64).  An eager call adds its counts to ``stats`` itself (``record_concrete``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from odebench.errors import InvalidInputError, NonFiniteStateError
from odebench.solve import error_for
from odebench.specs import SolveStats

from .config import OK
from .state import is_tracer

FORWARD_FIELDS = ("nfe_forward", "steps_accepted", "steps_rejected")
BACKWARD_FIELDS = ("nfe_backward", "steps_accepted_backward", "steps_rejected_backward")
TALLY_FIELDS = FORWARD_FIELDS + ("failed_forward",) + BACKWARD_FIELDS + ("failed_backward",)


class Uncounted(SolveStats):
    """Counters a backend may leave unfilled.  A backend that counts with a host callback per
    evaluation (``callback_counts``: the JAX peers) leaves its callbacks out of a program built
    with these stats; the trainer times such programs and counts in an untimed rerun."""


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True)
class SolveCounts:
    """One solve's forward counts as arrays (int32; a leading axis per vmap), its status
    (``odebench.solve.Status``) and where it stopped (t, next output time, h) when it failed."""

    nfe_forward: object
    steps_accepted: object
    steps_rejected: object
    status: object
    info: object
    max_steps: int  # static: for the error's message

    @classmethod
    def of(cls, counts, status, info, max_steps: int) -> "SolveCounts":
        return cls(counts[..., 0], counts[..., 1], counts[..., 2], status, info, max_steps)

    def tree_flatten(self):
        return (self.nfe_forward, self.steps_accepted, self.steps_rejected, self.status, self.info), self.max_steps

    @classmethod
    def tree_unflatten(cls, max_steps, children):
        return cls(*children, max_steps)


def tally(dtype=jnp.float32):
    """A fresh tally: the input whose cotangent receives a differentiated solve's counts."""
    return jnp.zeros(len(TALLY_FIELDS), dtype)


def check_tally(value) -> None:
    """A one-line error for anything but a float array of the tally's shape."""
    shape, dtype = np.shape(value), jnp.result_type(value)
    if shape != (len(TALLY_FIELDS),) or not jnp.issubdtype(dtype, jnp.floating):
        raise InvalidInputError(f"tally must be a float array of shape ({len(TALLY_FIELDS)},) such as "
                                f"odebench_jax.tally(), got {dtype} of shape {shape}")


def tally_cotangent(forward, backward, like):
    """The tally's cotangent from a solve's ``forward`` and ``backward`` (counts, status) pairs:
    the counts, and 1 for a half that failed, in ``TALLY_FIELDS`` order."""
    parts = []
    for counts, status in (forward, backward):
        parts += [jnp.asarray(counts).astype(like.dtype), (jnp.asarray(status) != OK).astype(like.dtype)[None]]
    return jnp.concatenate(parts)


def collect(stats: Optional[SolveStats] = None, counts=None, tally_grad=None) -> SolveStats:
    """Add a program's counts to ``stats`` (a new SolveStats by default) and return it; raise the
    odebench error of the first failed solve.

    ``counts``: a SolveCounts, or any pytree of them (a list from several solves; vmap axes
    summed).  ``tally_grad``: a tally's gradient.  A tally holds the forward counts of the
    solves it was passed to, so given both, the forward counts are the tally's and the
    SolveCounts only name a failure (their status and where it happened)."""
    stats = stats if stats is not None else SolveStats()
    returned = _solve_counts(counts)
    if tally_grad is None:
        for one in returned:
            _add(stats, FORWARD_FIELDS, [int(np.sum(np.asarray(getattr(one, f)))) for f in FORWARD_FIELDS])
    else:
        values = np.rint(np.asarray(tally_grad, dtype=np.float64)).astype(np.int64).tolist()
        _add(stats, FORWARD_FIELDS, values[0:3])
        _add(stats, BACKWARD_FIELDS, values[4:7])
    error = next((e for e in map(_failure, returned) if e is not None), None)
    if error is None and tally_grad is not None:
        error = _tally_failure(values)
    if error is not None:
        raise error
    return stats


def _solve_counts(counts) -> list:
    found = jax.tree_util.tree_leaves(counts, is_leaf=lambda x: isinstance(x, SolveCounts))
    for one in found:
        if not isinstance(one, SolveCounts):
            raise InvalidInputError(f"collect takes SolveCounts (from odeint(..., return_counts=True)), "
                                    f"got {type(one).__name__}")
    return found


def _add(stats: SolveStats, fields, values) -> None:
    for name, value in zip(fields, values):
        setattr(stats, name, getattr(stats, name) + int(value))


def _failure(counts: SolveCounts):
    """The error of the first failed element of one SolveCounts, or None."""
    status = np.reshape(np.asarray(counts.status), (-1,))
    info = np.reshape(np.asarray(counts.info), (-1, 3))
    failed = np.flatnonzero(status != OK)
    if not failed.size:
        return None
    i = int(failed[0])
    return error_for(int(status[i]), *info[i].tolist(), max_steps=counts.max_steps)


def _tally_failure(values):
    """A tally only counts failed solves; an eager call or return_counts=True names the cause."""
    for index, half in ((3, "forward"), (7, "backward")):
        if values[index]:
            return NonFiniteStateError(f"{values[index]} {half} solve(s) failed (their values are NaN); an eager "
                                       "call, or return_counts=True, names the cause")
    return None


def record_concrete(backend, stats: SolveStats, fields, counts, status, info, max_steps: int) -> None:
    """Add the counts of a solve that ran eagerly (the values are known now) to ``stats`` and
    raise its failure; a traced solve's counts are not known until its program runs, and are
    left to ``return_counts`` / ``tally``.  (Inside an eager ``jax.grad`` a value is a tracer
    whose primal is concrete: it is read through it.)"""
    values = [_concrete(x) for x in (counts, status, info)]
    if any(v is None for v in values):
        return
    counts, status, info = (np.reshape(v, s) for v, s in zip(values, ((-1, 3), (-1,), (-1, 3))))
    _add(stats, fields, np.rint(counts.sum(axis=0)).tolist())  # floats when read through a tracer
    backend.last_stats = stats
    failed = np.flatnonzero(status != OK)
    if failed.size:
        i = int(failed[0])
        backend.last_error = error_for(int(round(status[i])), *info[i].tolist(), max_steps=max_steps)
        raise backend.last_error


def _concrete(x) -> Optional[np.ndarray]:
    """x's value when it is known now (eager, or an eager grad's primal), else None (traced)."""
    if not is_tracer(x):
        return np.asarray(x)
    try:
        flat = jnp.reshape(jax.lax.stop_gradient(x), (-1,))  # a float output's tangent hides its value
        return np.asarray([float(flat[i]) for i in range(flat.shape[0])]).reshape(x.shape)
    except Exception:  # a jit/vmap tracer: its value exists only when the program runs
        return None


def warn_traced_failure(backend, err: Exception, stacklevel: int = 3) -> None:
    """How a failure found inside jit is reported where counts are collected for a harness
    (nothing could raise in the program): the error in ``backend.last_error`` and a
    RuntimeWarning naming it."""
    backend.last_error = err
    warnings.warn(f"{backend.name}: {err} (inside jit the solution is returned as NaN)", RuntimeWarning,
                  stacklevel=stacklevel)
