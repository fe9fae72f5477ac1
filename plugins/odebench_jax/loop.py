"""One explicit Runge-Kutta loop that runs any Tableau in JAX, under jit.

It mirrors ``odebench_torch.integrate`` operation for operation so that both frameworks take
the same steps on the same problem: the same automatic first step (Hairer, Nørsett & Wanner),
the same error ratio (RMS norm, or the max over slices of a mixed norm; Hairer's DOP853
combination when the tableau has ``b_err_low``), the same controller (accept when the ratio is
<= 1; factor safety * ratio^(-1/(q+1)) clamped to [1, ifactor] after an accepted step and to
at least dfactor after a rejected one; no growth right after a rejection; a step shortened to
land on the last output time keeps at least the step the controller had proposed), FSAL reuse,
and the same dense output between step ends.

Everything below runs inside one traced program: step-size control is traced scalar
arithmetic in the *control dtype* (float64 when ``jax_enable_x64`` is on, as torch's Python
floats are; float32 otherwise), the state stays in its own dtype (float32 or float64), and the
counters (function evaluations, accepted and rejected steps) are int32 values computed inside
the loop.  Inside jit nothing can raise, so the loop returns a *status* (odebench.solve's codes)
and an *info* vector (where it stopped); the caller turns a non-zero status into the odebench error when the
values are concrete (eager calls), and otherwise reports it through its stats callback while
the returned trajectory is all NaN.

The loop is a ``lax.while_loop`` that writes into a [T, n] buffer the output times each
accepted step reaches: y_new at the step's end, the interpolant inside (dense output, the
formula of odebench.solve.StagePlan; ``step_to_outputs`` makes every output time a step end).
It is not reverse-differentiable; the adjoint uses it for both of its solves.  With
``driver="record"`` it also keeps a *tape* of the accepted steps -- the state before the step,
t, h, its end and the outputs it produced -- from which ``backprop_backward`` runs reverse mode
step by step (jax-backprop).  The tape holds ``SEGMENT_ROWS`` steps; a longer solve is taped in
segments of that many, with the loop's carry kept at each segment's start, and the backward
records the earlier segments again from there.
"""


from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from odebench.solve import WARM, StagePlan, stage_plan

from .carry import Carry, counted, i32, pack, unpack
from .config import MAX_STEPS, MAX_STEPS_FIXED, NON_FINITE_Y0, OK, SolveConfig
from .controller import make_attempt
from .dtypes import control_dtype
from .step import initial_step
from .tape import empty_checkpoints, empty_tape, segment_rows, write_checkpoint, write_tape


def integrate(f: Callable, cfg: SolveConfig, y0, args, times, nums):
    """Solve y' = f(t, y, args) on a flat state y0 [n]; return (ys [T, n], counts, status, info).

    ``nums`` = (rtol, atol, step_size, first step) from ``numbers``: traced, so one compiled
    program serves every tolerance (and every step size of a fixed-step solver).

    ``counts`` is int32 [3] = (function evaluations, accepted steps, rejected steps);
    ``status`` an int32 code (0 = success) and ``info`` = (t where it stopped, the next output
    time, |step|) in the control dtype: on failure where it failed, on success the last time
    and the step the controller proposes next (an adjoint's backward segment starts with it).
    On failure ys is all NaN.  Times may decrease; they are not differentiated.
    """
    cdt = control_dtype()
    dtype = y0.dtype
    times = lax.stop_gradient(jnp.asarray(times, cdt))
    T = times.shape[0]
    if T == 1:
        return y0[None], jnp.zeros(3, jnp.int32), i32(OK), jnp.zeros(3, cdt)
    plan = stage_plan(cfg.tableau)
    c0, attempt = _start(f, plan, cfg, y0, args, times, lax.stop_gradient(jnp.asarray(nums, cdt)), cdt)
    max_steps = cfg.opts["max_steps"]

    def active(p):
        ints, counters = p[3], p[4]
        return (ints[0] < T) & (ints[2] == OK) & (counters[0] < max_steps)

    if cfg.driver not in ("while", "record"):
        raise ValueError(f"unknown driver {cfg.driver!r}")
    record = cfg.driver == "record"
    buf = jnp.zeros((T,) + y0.shape, dtype).at[0].set(y0)
    rows = segment_rows(cfg.length) if record else 0
    taped = (empty_tape(rows, y0, cdt), empty_checkpoints(cfg.length, rows, pack(c0))) if record else ()
    direction = jnp.where(times[-1] > times[0], 1.0, -1.0).astype(cdt)
    advance = make_advance(f, plan, times, direction, args, attempt)

    def body(state):
        p, ys, taped = state
        c = unpack(p)
        if record:  # a segment's first carry (overwritten, after a rejection, by the retry's)
            taped = (taped[0], write_checkpoint(taped[1], p, c.acc, rows))
        c2, ys, row = advance(c, ys)
        if record:  # row `acc mod rows` is overwritten until a step is accepted there
            taped = (write_tape(taped[0], c.acc % rows, *row), taped[1])
        return pack(c2), ys, taped

    p, ys, taped = lax.while_loop(lambda s: active(s[0]), body, (pack(c0), buf, taped))
    ys, counts, status, info = _finish(plan, unpack(p), ys, times)
    if record:
        return ys, counts, status, info, taped
    return ys, counts, status, info



def make_advance(f, plan: StagePlan, times, direction, args, attempt):
    """One step attempt from a carry: (the next carry, ys with the outputs it reached, its tape
    row (y, t, h, first output, end of outputs, t_end))."""

    def advance(c: Carry, ys):
        c2, accept, h_used, ks = attempt(c)
        c2, ys = _emit(f, plan, times, direction, args, c, c2, accept, h_used, ks, ys)
        return c2, ys, (c.y, c.t, h_used, c.k, c2.k, c2.t)

    return advance


def _start(f, plan: StagePlan, cfg: SolveConfig, y0, args, times, nums, cdt):
    """The loop's first carry (f(t0, y0) evaluated, the first step chosen) and its step attempt."""
    opts = cfg.opts
    rtol, atol, step_size, warm_step = nums[0], nums[1], nums[2], nums[3]
    direction = jnp.where(times[-1] > times[0], 1.0, -1.0).astype(cdt)
    t0 = times[0]
    f0 = f(t0.astype(y0.dtype), y0, args)
    nfe = 1
    status0 = jnp.where(jnp.all(jnp.isfinite(lax.stop_gradient(y0))), OK, NON_FINITE_Y0).astype(jnp.int32)
    if plan.tableau.adaptive:
        if opts["first_step"] == WARM:
            h = direction * warm_step
        elif opts["first_step"] is not None:
            h = direction * opts["first_step"]
        else:
            h = direction * initial_step(f, t0, y0, f0, direction, plan.tableau.error_order,
                                         rtol, atol, cfg.slices, args, cdt)
            nfe += 1
    else:
        h = step_size
    attempt = make_attempt(f, plan, cfg, times, args, nums, cdt)
    c0 = Carry(
        k=i32(1), t=t0, y=y0, fy=f0, fy_valid=jnp.asarray(True), h=jnp.asarray(h, cdt),
        rejected=jnp.asarray(False), j=i32(0), counters=i32([0, nfe, 0, 0]),
        status=status0, info=jnp.zeros(3, cdt),
    )
    return c0, attempt


def _emit(f, plan: StagePlan, times, direction, args, c: Carry, c2: Carry, accept, h, ks, ys):
    """Write the values at the output times an accepted step [c.t, c2.t] reached: y_new at its
    end, the interpolant inside (as the torch loop's ``_emit``).  A Hermite interpolant of a
    non-FSAL tableau needs f(t_new, y_new): evaluated once, then carried into the next step."""
    T = times.shape[0]
    if plan.needs_end_slope:
        inside = accept & (c2.k < T) & (direction * (times[jnp.minimum(c2.k, T - 1)] - c2.t) < 0)
        f1 = lax.cond(inside, lambda: f(c2.t.astype(c2.y.dtype), c2.y, args), lambda: jnp.zeros_like(c2.y))
        c2 = c2._replace(fy=jnp.where(inside, f1, c2.fy), fy_valid=c2.fy_valid | inside,
                         counters=counted(c2, nfe=inside))

    def more(s):
        k, _ = s
        return accept & (k < T) & (direction * (times[jnp.minimum(k, T - 1)] - c2.t) <= 0)

    def write(s):
        k, ys = s
        theta = (times[k] - c.t) / h
        value = jnp.where(times[k] == c2.t, c2.y, _interpolate(plan, theta, c.y, ks, c2.y, c2.fy, h))
        return k + 1, ys.at[k].set(value)

    k, ys = lax.while_loop(more, write, (c2.k, ys))
    return c2._replace(k=k.astype(jnp.int32)), ys


def _interpolate(plan: StagePlan, theta, y0, ks, y1, f1, h):
    """y(t0 + theta h) from the step's ends and stages: odebench.solve.StagePlan's weights (the
    torch loop's formula); a weight that is the float 0.0 costs nothing."""
    dtype = y0.dtype
    alpha, betas, gamma, delta = plan.interpolation_weights(theta)
    out = jnp.asarray(alpha).astype(dtype) * y0
    for weight, vector in ((gamma, y1), (delta * h, f1)):
        if not (isinstance(weight, float) and weight == 0.0):
            out = out + jnp.asarray(weight).astype(dtype) * vector
    if not isinstance(ks, (list, tuple)):  # stacked stages: one contraction
        weights = jnp.stack([jnp.asarray(beta * h, h.dtype) for beta in betas]).astype(dtype)
        return out + jnp.tensordot(weights, ks, axes=1)
    for beta, k in zip(betas, ks):
        if not (isinstance(beta, float) and beta == 0.0):
            out = out + (beta * h).astype(dtype) * k
    return out


def _finish(plan: StagePlan, c: Carry, ys, times):
    """(ys, counts, status, info) from the last carry: max_steps exhausted becomes a status, and
    a failed solve's ys are NaN."""
    T = times.shape[0]
    exhausted = (c.k < T) & (c.status == OK)
    code = MAX_STEPS if plan.tableau.adaptive else MAX_STEPS_FIXED
    status = jnp.where(exhausted, code, c.status).astype(jnp.int32)
    k_last = jnp.minimum(c.k, T - 1)
    info = jnp.where(exhausted | (status == OK), jnp.stack([c.t, times[k_last], jnp.abs(c.h)]), c.info)
    ys = jnp.where(status == OK, ys, jnp.asarray(jnp.nan, ys.dtype))
    return ys, c.counters[1:], status, info



# jit-compiled entry point; f and cfg are static (hashable), so a repeated eager call with the
# same function, solver, tolerances and options reuses the compiled program.  Inside an outer
# jit this is simply inlined.
integrate_jit = jax.jit(integrate, static_argnums=(0, 1))
