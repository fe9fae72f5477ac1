"""The loop's carry: what one step attempt hands the next, and how it is packed for the loop."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Carry(NamedTuple):
    k: jax.Array  # index of the next output time
    t: jax.Array
    y: jax.Array
    fy: jax.Array  # f(t, y) (valid when fy_valid)
    fy_valid: jax.Array
    h: jax.Array  # the proposed step (signed)
    rejected: jax.Array  # a step was rejected since the last accepted one
    j: jax.Array  # fixed step: steps taken in the current interval
    counters: jax.Array  # int32 [4]: step attempts, evaluations, accepted steps, rejected steps
    status: jax.Array
    info: jax.Array  # (t, t_next, |h|) where it stopped

    @property
    def steps(self):
        return self.counters[0]

    @property
    def nfe(self):
        return self.counters[1]

    @property
    def acc(self):
        return self.counters[2]


def counted(c: Carry, attempts=0, nfe=0, accepted=0, rejected=0):
    """c's counters advanced in one vector addition.  Why one vector: each counter updated on its
    own is a kernel of its own at the start of every step, and more than eight kernels ready at
    once make XLA:CPU's thunk executor hand half of them to its thread pool, which costs a
    thread wake-up (10-40 us on the development machine) per step: measured in
    docs/measurements/jax-vs-diffrax.md, "XLA:CPU's thread hand-offs"."""
    return c.counters + jnp.stack([i32(x) for x in (attempts, nfe, accepted, rejected)])


def i32(x):
    return jnp.asarray(x, jnp.int32)


def pack(c: Carry):
    """The loop carry as (y, fy, float scalars, int scalars, counters): small vectors instead of a
    dozen scalars, which XLA compiles into far fewer kernels (compile time is per kernel on CPU)."""
    floats = jnp.stack([c.t, c.h, c.info[0], c.info[1], c.info[2]])
    ints = jnp.stack([c.k, c.j, c.status, c.fy_valid.astype(jnp.int32), c.rejected.astype(jnp.int32)]).astype(jnp.int32)
    return c.y, c.fy, floats, ints, c.counters


def zero_carry(y, cdt):
    """A packed carry of zeros shaped as a solve's of state ``y`` (a template for its parts)."""
    z, i = jnp.zeros((), cdt), i32(0)
    return pack(Carry(k=i, t=z, y=y, fy=y, fy_valid=jnp.asarray(False), h=z, rejected=jnp.asarray(False), j=i,
                        counters=jnp.zeros(4, jnp.int32), status=i, info=jnp.zeros(3, cdt)))


def unpack(p) -> Carry:
    y, fy, fl, it, counters = p
    return Carry(k=it[0], t=fl[0], y=y, fy=fy, fy_valid=it[3] != 0, h=fl[1], rejected=it[4] != 0, j=it[1],
                  counters=counters, status=it[2], info=fl[2:5])
