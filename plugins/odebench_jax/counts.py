"""Counts as data: a traced solve's counters returned by the program, with no host callback.

The default export (``report.py``) takes the counts out of a jitted program through a host
callback, which costs about 0.23 ms per solve on CPU: a program with a callback runs on
JAX's Python dispatch path (README, "cost per evaluation").  diffrax returns its statistics
as outputs of the solve instead; this is that path for odebench, with the backward counts too:

    ys, counts = backend.odeint(func, y0, t, args, return_counts=True, tally=tl)

``counts`` (a :class:`SolveCounts`, arrays of the program) holds the forward counts and the
forward status.  ``tl`` (``tally()``: zeros of shape (4,)) is an input whose cotangent is the
backward pass's counts, ``TALLY_FIELDS``: differentiate the loss with respect to it too and
its "gradient" is [nfe_backward, steps_accepted_backward, steps_rejected_backward, failed
backward solves].  Cotangents add up, so one tally shared by several solves (or by the
elements of a ``vmap``, the tally unbatched) gets their sum.  The values are exact integers
below 2**24 in float32 (float64: 2**53).  :func:`collect` adds both (one SolveCounts or a list
of them) to a SolveStats on the host and raises the error of a failed solve, as an eager call
would.
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

FORWARD_FIELDS = ("nfe_forward", "steps_accepted", "steps_rejected")
BACKWARD_FIELDS = ("nfe_backward", "steps_accepted_backward", "steps_rejected_backward")
TALLY_FIELDS = BACKWARD_FIELDS + ("failed_backward",)


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
    """A fresh tally: the input whose cotangent receives the backward counts."""
    return jnp.zeros(len(TALLY_FIELDS), dtype)


def check_tally(value) -> None:
    """A one-line error for anything but a float array of shape (4,)."""
    shape, dtype = np.shape(value), jnp.result_type(value)
    if shape != (len(TALLY_FIELDS),) or not jnp.issubdtype(dtype, jnp.floating):
        raise InvalidInputError(f"tally must be a float array of shape ({len(TALLY_FIELDS)},) such as "
                                f"odebench_jax.counts.tally(), got {dtype} of shape {shape}")


def tally_cotangent(counts, status, like):
    """The backward counts and whether the backward failed, as the tally's cotangent."""
    failed = (jnp.asarray(status) != OK).astype(like.dtype)
    return jnp.concatenate([jnp.asarray(counts).astype(like.dtype), failed[None]])


def collect(stats: Optional[SolveStats] = None, counts=None, tally_grad=None) -> SolveStats:
    """Add returned counts (a SolveCounts, or any pytree of them, e.g. a list from several
    solves; vmap axes summed) and a tally's gradient to ``stats`` (a new SolveStats by default)
    and return it; raise the odebench error of the first failed solve."""
    stats = stats if stats is not None else SolveStats()
    error = None
    for one in jax.tree_util.tree_leaves(counts, is_leaf=lambda x: isinstance(x, SolveCounts)):
        if not isinstance(one, SolveCounts):
            raise InvalidInputError(f"collect takes SolveCounts (from odeint(..., return_counts=True)), "
                                    f"got {type(one).__name__}")
        found = _add_forward(stats, one)
        error = found if error is None else error
    if tally_grad is not None:
        values = np.rint(np.asarray(tally_grad, dtype=np.float64)).astype(np.int64).tolist()
        for name, value in zip(BACKWARD_FIELDS, values):
            setattr(stats, name, getattr(stats, name) + value)
        if error is None and values[3]:
            error = NonFiniteStateError(f"{values[3]} backward solve(s) failed (their gradients are NaN); "
                                        "an eager call or export_counts=True names the cause")
    if error is not None:
        raise error
    return stats


def _add_forward(stats: SolveStats, counts: SolveCounts):
    """Add one SolveCounts to stats; the error of its first failed element, or None."""
    for name in FORWARD_FIELDS:
        setattr(stats, name, getattr(stats, name) + int(np.sum(np.asarray(getattr(counts, name)))))
    status = np.reshape(np.asarray(counts.status), (-1,))
    info = np.reshape(np.asarray(counts.info), (-1, 3))
    failed = np.flatnonzero(status != OK)
    if not failed.size:
        return None
    i = int(failed[0])
    return error_for(int(status[i]), *info[i].tolist(), max_steps=counts.max_steps)


def warn_traced_failure(backend, err: Exception, stacklevel: int = 3) -> None:
    """How a failure found inside jit is reported (nothing can raise there): the error in
    ``backend.last_error`` and a RuntimeWarning naming it."""
    backend.last_error = err
    warnings.warn(f"{backend.name}: {err} (inside jit the solution is returned as NaN)", RuntimeWarning,
                  stacklevel=stacklevel)
