"""A host callback for the counts a traced solve reports, cheaper than ``jax.pure_callback``.

``jax.pure_callback`` hands its callback JAX arrays: before calling it, it copies the host
buffers it was given onto the CPU device (``device_put``) under a default-device context.  For
the one small array a solve reports that is most of the callback's cost: measured on the
development machine (2-core Xeon, jax 0.10.2) in the mlp problem's jitted forward at 1e-3,
431 us per solve with ``pure_callback`` against 267 us with this primitive (README, "cost per
evaluation").  This primitive lowers with ``jax.interpreters.mlir.emit_python_callback``, the
mechanism under ``pure_callback``, and hands the callback the numpy buffer as it is.

The report it stands for is a pure function of its operand in the program's eyes: no effects,
so a result nobody uses is dead code, as with ``pure_callback`` (the caller makes the solve's
output depend on it).  Its result is a zero, with a zero tangent; under ``vmap`` it sees every
element at once, the batch on the leading axis (``pure_callback``'s ``vmap_method="expand_dims"``).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

report_p = Primitive("odebench_report_counts")


def report(callback: Callable[[np.ndarray], np.ndarray], packed):
    """Run ``callback(packed as numpy) -> zeros(packed.shape[:-1])`` when the program does; its
    result is that zero array, for the caller to make a result of the solve depend on.  The
    callback is the primitive's parameter (hashed and compared by identity, as
    ``pure_callback``'s is), so it lives as long as the traced program does."""
    return report_p.bind(packed, callback=callback)


def _abstract_eval(packed, *, callback):
    return ShapedArray(packed.shape[:-1], packed.dtype)


def _impl(packed, *, callback):
    return jnp.asarray(callback(np.asarray(packed)))


def _lowering(ctx, packed, *, callback):
    results, _, _ = mlir.emit_python_callback(ctx, lambda buffer: (callback(buffer),), None, [packed],
                                              ctx.avals_in, ctx.avals_out, has_side_effect=False,
                                              returns_token=False)
    return results


def _jvp(primals, tangents, *, callback):
    (packed,) = primals
    return report_p.bind(packed, callback=callback), jnp.zeros(packed.shape[:-1], packed.dtype)


def _batch(args, dims, *, callback):
    (packed,), (dim,) = args, dims
    return report_p.bind(jnp.moveaxis(packed, dim, 0), callback=callback), 0


report_p.def_abstract_eval(_abstract_eval)
report_p.def_impl(_impl)
mlir.register_lowering(report_p, _lowering)
ad.primitive_jvps[report_p] = _jvp
batching.primitive_batchers[report_p] = _batch
