"""One Runge-Kutta step, the controller's error ratio, and the automatic first step."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from odebench.solve import StagePlan


def _combine(base, ks, coeffs, h, dtype):
    """base + sum_j (coeffs[j] * h) * ks[j], left to right, skipping zero coefficients (as torch)."""
    out = base
    for c, k in zip(coeffs, ks):
        if c != 0.0:
            out = out + (c * h).astype(dtype) * k
    return out


def _tree_combine(base, ks, coeffs, h):
    """``_combine`` leaf by leaf, for a state that is a pytree of arrays."""
    return jax.tree_util.tree_map(lambda b, *k: _combine(b, [x.astype(b.dtype) for x in k], coeffs, h, b.dtype),
                                  base, *ks)


def _weighted_sum(ks, coeffs, h, dtype):
    """h * sum_j coeffs[j] * ks[j] (the local error estimate), as torch's _weighted_sum."""
    out = None
    for c, k in zip(coeffs, ks):
        if c != 0.0:
            term = k * (c * h).astype(dtype)
            out = term if out is None else out + term
    return out if out is not None else jnp.zeros_like(ks[0])


def rk_step(f, plan: StagePlan, t, y, f0, h, args, unroll: bool = False):
    """One RK step from (t, y) with first stage f0: returns (y_new, stages); the stages stacked
    [s, n] (``unroll``: a list).  Stacked, the interpolation takes them as one array: as a list
    of slices, each slice was a kernel of its own after every step, and a step with many small
    kernels pays XLA:CPU's thread hand-offs (see ``carry.counted``).

    The stages are computed in a ``lax.scan`` over the rows of A, so ``func`` is traced once
    per step whatever the number of stages: compile time does not grow with it (DOP853 with
    an MLP compiles in about half the time of the unrolled loop, and runs as fast).  A stage's
    input y + sum_j (a_ij h) k_j is one ``tensordot`` of the row (zeros included) with the
    stacked stages, as is the solution with b, as diffrax does: one kernel, where summing the
    rows one by one took a slice and an add per row.  On a field that costs nothing (a state of
    1,024, 10 fixed dopri5 steps, jax-adjoint's jitted value_and_grad) that halved the loop's
    cost, 1,266 -> 623 us (diffrax 670), and it cut compile times by 10-40 %; on
    benchmarks/jax_cost.py's problems, whose evaluations dominate, the run times stayed within
    the noise.  The values are the torch loop's (which sums left to right, skipping zeros) up
    to rounding.  An FSAL tableau's last stage input and the solution are the same dot (their
    rows agree, and the last stage enters with weight zero), so f(y_new) is that stage.

    ``unroll=True`` traces the stages one by one (zero coefficients skipped, as torch): that is
    how jax-backprop differentiates a step, because the transpose of the scan is slow -- its
    backward per forward evaluation 395 -> 247 us on benchmarks/jax_cost.py's MLP at 1e-7, and
    4896 -> 4139 us on its CNF at 1e-5, with compile times 2.1 -> 1.9 s and 3.5 -> 4.1 s.
    """
    dtype = jax.tree_util.tree_leaves(y)[0].dtype
    s = len(plan.c)
    if s == 1:
        return _combine(y, [f0], plan.b, h, dtype), [f0]
    cdt = h.dtype
    if unroll:  # y, f0 and f's values may be pytrees (jax-backprop's step on a tuple state)
        ks = [f0]
        for i in range(1, s):
            ks.append(f((t + plan.c[i] * h).astype(dtype), _tree_combine(y, ks, plan.rows[i], h), args))
        return _tree_combine(y, ks, plan.b, h), ks
    rows = jnp.asarray([r + [0.0] * (s - len(r)) for r in plan.rows[1:]], cdt)  # [s-1, s]
    cs = jnp.asarray(plan.c[1:], cdt)
    K0 = jnp.zeros((s,) + y.shape, dtype).at[0].set(f0)

    def stage(K, xs):
        i, row, ci = xs
        yi = y + jnp.tensordot((row * h).astype(dtype), K, axes=1)
        ki = f((t + ci * h).astype(dtype), yi, args)
        return lax.dynamic_update_index_in_dim(K, ki.astype(dtype), i, 0), None

    K, _ = lax.scan(stage, K0, (jnp.arange(1, s, dtype=jnp.int32), rows, cs))
    b = jnp.asarray(list(plan.b) + [0.0] * (s - len(plan.b)), cdt)
    return y + jnp.tensordot((b * h).astype(dtype), K, axes=1), K


def _vnorm(x):
    return jnp.sqrt(jnp.sum(x * x))


def rms_norm(x, slices, cdt):
    """The torch RMSNorm: plain RMS, or the max over slices of each slice's RMS (mixed norm)."""
    if slices is None:
        return _vnorm(x).astype(cdt) / math.sqrt(max(x.size, 1))
    parts = [_vnorm(x[a:b]) / math.sqrt(max(b - a, 1)) for a, b in slices]
    return jnp.max(jnp.stack(parts)).astype(cdt)


def dop853_combination(e, e_low):
    """e^2 / sqrt(e^2 + 0.01 e_low^2) without overflow; 0 when e == 0; e + e_low if non-finite."""
    safe = jnp.where(e == 0, jnp.ones_like(e), e)
    comb = jnp.where(e == 0, jnp.zeros_like(e), e * (e / jnp.hypot(safe, 0.1 * e_low)))
    return jnp.where(jnp.isfinite(e) & jnp.isfinite(e_low), comb, e + e_low)


def error_ratio(plan: StagePlan, ks, y0, y1, h, rtol, atol, slices, cdt):
    """The controller's error ratio (no gradient flows through it)."""
    ks = [lax.stop_gradient(k) for k in ks]
    y0, y1 = lax.stop_gradient(y0), lax.stop_gradient(y1)
    dtype = y0.dtype
    err = _weighted_sum(ks, plan.b_err, h, dtype)
    scale = jnp.maximum(jnp.abs(y0), jnp.abs(y1)) * jnp.asarray(rtol).astype(dtype) + jnp.asarray(atol).astype(dtype)
    if plan.b_err_low is None:
        return rms_norm(err / scale, slices, cdt)
    err_low = _weighted_sum(ks, plan.b_err_low, h, dtype)
    e_rel, low_rel = err / scale, err_low / scale
    parts = slices or ((0, e_rel.shape[0]),)
    combs = []
    for a, b in parts:
        root = math.sqrt(max(b - a, 1))
        combs.append(dop853_combination(_vnorm(e_rel[a:b]).astype(cdt) / root, _vnorm(low_rel[a:b]).astype(cdt) / root))
    return combs[0] if len(combs) == 1 else jnp.max(jnp.stack(combs))


def initial_step(f, t0, y0, f0, direction, error_order, rtol, atol, slices, args, cdt):
    """Hairer, Nørsett & Wanner (1993), Solving ODEs I, sec. II.4: the automatic first step."""
    y0, f0, args = lax.stop_gradient(y0), lax.stop_gradient(f0), lax.stop_gradient(args)
    dtype = y0.dtype
    scale = jnp.abs(y0) * jnp.asarray(rtol).astype(dtype) + jnp.asarray(atol).astype(dtype)
    d0 = rms_norm(y0 / scale, slices, cdt)
    d1 = rms_norm(f0 / scale, slices, cdt)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = jnp.where(small, jnp.asarray(1e-6, cdt), 0.01 * d0 / jnp.where(small, jnp.ones_like(d1), d1))
    y1 = y0 + (direction * h0).astype(dtype) * f0
    f1 = f((t0 + direction * h0).astype(dtype), y1, args)
    d2 = rms_norm((f1 - f0) / scale, slices, cdt) / h0
    dm = jnp.maximum(d1, d2)
    tiny = dm <= 1e-15
    h1 = jnp.where(tiny, jnp.maximum(jnp.asarray(1e-6, cdt), h0 * 1e-3),
                   (0.01 / jnp.where(tiny, jnp.ones_like(dm), dm)) ** (1.0 / (error_order + 1)))
    return jnp.minimum(100 * h0, h1)
