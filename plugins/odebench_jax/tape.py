"""The tape of accepted steps that jax-backprop records, and the loop's carry kept at the start
of each of its segments."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class Tape(NamedTuple):
    """Row i: the state before accepted step i, its t, h and end time, and the outputs it
    produced, indices [k_lo, k_hi) (none when equal).  Rows at and after the number of accepted
    steps are scratch.  The scalars are kept as two small matrices, so a step writes its row in
    three updates instead of six: fewer kernels per step (why that matters: ``carry.counted``)."""

    y: jax.Array  # [L, n]
    times: jax.Array  # [L, 3]: t, h, t_end
    outputs: jax.Array  # [L, 2] int32: k_lo, k_hi

    @property
    def t(self):
        return self.times[:, 0]

    @property
    def h(self):
        return self.times[:, 1]

    @property
    def t_end(self):
        return self.times[:, 2]

    @property
    def k_lo(self):
        return self.outputs[:, 0]

    @property
    def k_hi(self):
        return self.outputs[:, 1]


# A tape of this many steps: a longer solve is taped in segments of it (see loop.integrate).  A tape
# of max_steps rows (4096) is allocated and zero-filled on every solve whatever the steps taken:
# measured on benchmarks/jax_cost.py's problems at 1e-3 (2 and 3 steps), 32 rows instead of
# 4096 took the MLP's backward from 4.1 to 3.0 ms and the CNF's from 57 to 47 ms.  256 rows
# cover every solve of that benchmark (the longest takes 68 steps).
SEGMENT_ROWS = 256


def segment_rows(length: int) -> int:
    """The tape's rows for a solve of at most ``length`` steps."""
    if length < 1:
        raise ValueError("driver 'record' needs length >= 1 (max_steps)")
    return min(length, SEGMENT_ROWS)


def empty_tape(rows: int, y0, cdt) -> Tape:
    return Tape(jnp.zeros((rows,) + y0.shape, y0.dtype), jnp.zeros((rows, 3), cdt), jnp.zeros((rows, 2), jnp.int32))


def _dtype_groups(p) -> list:
    """The packed carry's parts grouped by dtype, as lists of part indices: a checkpoint keeps one
    flat row per dtype, written in one update."""
    groups = {}
    for i, x in enumerate(p):
        groups.setdefault(jnp.dtype(x.dtype), []).append(i)
    return list(groups.values())


def empty_checkpoints(length: int, rows: int, p0):
    """The loop's packed carry at the start of each segment: one row per segment, and a scratch
    row that the steps inside a segment write to; one matrix per dtype of the carry's parts."""
    segments = -(-length // rows)
    return tuple(jnp.zeros((segments + 1, sum(p0[i].size for i in group)), p0[group[0]].dtype)
                 for group in _dtype_groups(p0))


def write_checkpoint(checkpoints, p, acc, rows: int):
    at = jnp.where(acc % rows == 0, acc // rows, checkpoints[0].shape[0] - 1)
    rows_ = [jnp.concatenate([jnp.ravel(p[i]) for i in group]) for group in _dtype_groups(p)]
    return tuple(lax.dynamic_update_index_in_dim(c, x, at, 0) for c, x in zip(checkpoints, rows_))


def read_checkpoint(checkpoints, segment, like):
    """The packed carry kept for ``segment``, in the parts (shapes, dtypes) of ``like``."""
    parts = [None] * len(like)
    for c, group in zip(checkpoints, _dtype_groups(like)):
        row, at = c[segment], 0
        for i in group:
            parts[i] = row[at:at + like[i].size].reshape(like[i].shape)
            at += like[i].size
    return tuple(parts)


def write_tape(tape: Tape, row, y, t, h, k_lo, k_hi, t_end) -> Tape:
    return Tape(lax.dynamic_update_index_in_dim(tape.y, y, row, 0),
                lax.dynamic_update_index_in_dim(tape.times, jnp.stack([t, h, t_end]).astype(tape.times.dtype), row, 0),
                lax.dynamic_update_index_in_dim(tape.outputs, jnp.stack([k_lo, k_hi]).astype(jnp.int32), row, 0))
