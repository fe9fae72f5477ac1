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

import math
from functools import partial
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from odebench.solve import WARM, StagePlan, Status, stage_plan
from odebench.specs import Tableau

from .pullback import choose, pull_back
from .state import FlatFunc

# the status codes of odebench.solve as plain ints (they become int32 constants of the program)
OK, MAX_STEPS, NON_FINITE, UNDERFLOW, MAX_STEPS_FIXED, NON_FINITE_FIXED, NON_FINITE_Y0 = (int(s) for s in Status)


def control_dtype():
    """float64 when jax_enable_x64 is on (as torch's Python-float controller), else float32."""
    return jax.dtypes.canonicalize_dtype(np.float64)


# ---------------------------------------------------------------------------------------
# the static description of one solve (hashable: it is a static argument of jax.jit)
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SolveConfig:
    """Everything about a solve that is fixed at trace time.

    ``slices``: the mixed error norm's slices of the flat state (None: one RMS norm).
    ``driver``: "while", or "record" (also return the tape of accepted steps);
    ``length``: the most steps the tape must cover (max_steps; taped in segments).
    """

    tableau: Tableau
    options: tuple  # sorted (key, value) pairs from resolve_options
    slices: Optional[tuple] = None
    driver: str = "while"
    length: int = 0

    @property
    def opts(self) -> dict:
        return dict(self.options)


def make_config(tableau: Tableau, options: dict, slices=None, driver="while", length=0):
    """The static config; a fixed step size is left out (it is traced: see ``numbers``)."""
    static = {k: (None if k == "step_size" else v) for k, v in options.items()}
    return SolveConfig(tableau, tuple(sorted(static.items())),
                       None if slices is None else tuple(tuple(s) for s in slices), driver, int(length))


# ---------------------------------------------------------------------------------------
# one step, the error ratio, the first step
# ---------------------------------------------------------------------------------------

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
    of slices, each slice was a kernel of its own after every step (README, item 15).

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


# ---------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------

class _Carry(NamedTuple):
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


def _counted(c: _Carry, attempts=0, nfe=0, accepted=0, rejected=0):
    """c's counters advanced in one vector addition.  Why one vector: each counter updated on its
    own is a kernel of its own at the start of every step, and more than eight kernels ready at
    once make XLA:CPU's thunk executor hand half of them to its thread pool, which costs a
    thread wake-up (10-40 us on this machine) per step (README, item 15)."""
    return c.counters + jnp.stack([_i32(x) for x in (attempts, nfe, accepted, rejected)])


def _i32(x):
    return jnp.asarray(x, jnp.int32)


def _pack(c: _Carry):
    """The loop carry as (y, fy, float scalars, int scalars, counters): small vectors instead of a
    dozen scalars, which XLA compiles into far fewer kernels (compile time is per kernel on CPU)."""
    floats = jnp.stack([c.t, c.h, c.info[0], c.info[1], c.info[2]])
    ints = jnp.stack([c.k, c.j, c.status, c.fy_valid.astype(jnp.int32), c.rejected.astype(jnp.int32)]).astype(jnp.int32)
    return c.y, c.fy, floats, ints, c.counters


def _zero_carry(y, cdt):
    """A packed carry of zeros shaped as a solve's of state ``y`` (a template for its parts)."""
    z, i = jnp.zeros((), cdt), _i32(0)
    return _pack(_Carry(k=i, t=z, y=y, fy=y, fy_valid=jnp.asarray(False), h=z, rejected=jnp.asarray(False), j=i,
                        counters=jnp.zeros(4, jnp.int32), status=i, info=jnp.zeros(3, cdt)))


def _unpack(p) -> _Carry:
    y, fy, fl, it, counters = p
    return _Carry(k=it[0], t=fl[0], y=y, fy=fy, fy_valid=it[3] != 0, h=fl[1], rejected=it[4] != 0, j=it[1],
                  counters=counters, status=it[2], info=fl[2:5])


def numbers(rtol: float, atol: float, options: dict, cdt, first_step=0.0):
    """The traced numbers of a solve: (rtol, atol, fixed step size or 0, first step or 0).

    The last is the first step |h| of an adaptive solve whose options say first_step="warm"
    (the adjoint's backward segments); it may be traced (``nums.at[3].set(h)``).
    """
    return jnp.stack([jnp.asarray(x, cdt) for x in (rtol, atol, options.get("step_size") or 0.0, first_step)])


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
        return y0[None], jnp.zeros(3, jnp.int32), _i32(OK), jnp.zeros(3, cdt)
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
    taped = (_empty_tape(rows, y0, cdt), _empty_checkpoints(cfg.length, rows, _pack(c0))) if record else ()
    direction = jnp.where(times[-1] > times[0], 1.0, -1.0).astype(cdt)
    advance = _advance(f, plan, times, direction, args, attempt)

    def body(state):
        p, ys, taped = state
        c = _unpack(p)
        if record:  # a segment's first carry (overwritten, after a rejection, by the retry's)
            taped = (taped[0], _write_checkpoint(taped[1], p, c.acc, rows))
        c2, ys, row = advance(c, ys)
        if record:  # row `acc mod rows` is overwritten until a step is accepted there
            taped = (_write_tape(taped[0], c.acc % rows, *row), taped[1])
        return _pack(c2), ys, taped

    p, ys, taped = lax.while_loop(lambda s: active(s[0]), body, (_pack(c0), buf, taped))
    ys, counts, status, info = _finish(plan, _unpack(p), ys, times)
    if record:
        return ys, counts, status, info, taped
    return ys, counts, status, info


def _advance(f, plan: StagePlan, times, direction, args, attempt):
    """One step attempt from a carry: (the next carry, ys with the outputs it reached, its tape
    row (y, t, h, first output, end of outputs, t_end))."""

    def advance(c: _Carry, ys):
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
    attempt = _attempt(f, plan, cfg, times, args, nums, cdt)
    c0 = _Carry(
        k=_i32(1), t=t0, y=y0, fy=f0, fy_valid=jnp.asarray(True), h=jnp.asarray(h, cdt),
        rejected=jnp.asarray(False), j=_i32(0), counters=_i32([0, nfe, 0, 0]),
        status=status0, info=jnp.zeros(3, cdt),
    )
    return c0, attempt


def _attempt(f, plan: StagePlan, cfg: SolveConfig, times, args, nums, cdt):
    """The loop's step attempt, carry -> (next carry, accepted, h used, stages)."""
    if plan.tableau.adaptive:
        direction = jnp.where(times[-1] > times[0], 1.0, -1.0).astype(cdt)
        return _adaptive_attempt(f, plan, cfg, times, direction, args, nums[0], nums[1], cdt)
    return _fixed_attempt(f, plan, nums[2], times, args, cdt)


def _emit(f, plan: StagePlan, times, direction, args, c: _Carry, c2: _Carry, accept, h, ks, ys):
    """Write the values at the output times an accepted step [c.t, c2.t] reached: y_new at its
    end, the interpolant inside (as the torch loop's ``_emit``).  A Hermite interpolant of a
    non-FSAL tableau needs f(t_new, y_new): evaluated once, then carried into the next step."""
    T = times.shape[0]
    if plan.needs_end_slope:
        inside = accept & (c2.k < T) & (direction * (times[jnp.minimum(c2.k, T - 1)] - c2.t) < 0)
        f1 = lax.cond(inside, lambda: f(c2.t.astype(c2.y.dtype), c2.y, args), lambda: jnp.zeros_like(c2.y))
        c2 = c2._replace(fy=jnp.where(inside, f1, c2.fy), fy_valid=c2.fy_valid | inside,
                         counters=_counted(c2, nfe=inside))

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


def _finish(plan: StagePlan, c: _Carry, ys, times):
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


# ---------------------------------------------------------------------------------------
# the tape of accepted steps and reverse mode through it (jax-backprop)
# ---------------------------------------------------------------------------------------

class Tape(NamedTuple):
    """Row i: the state before accepted step i, its t, h and end time, and the outputs it
    produced, indices [k_lo, k_hi) (none when equal).  Rows at and after the number of accepted
    steps are scratch.  The scalars are kept as two small matrices, so a step writes its row in
    three updates instead of six (README, item 15)."""

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


# A tape of this many steps: a longer solve is taped in segments of it (see integrate).  A tape
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


def _empty_tape(rows: int, y0, cdt) -> Tape:
    return Tape(jnp.zeros((rows,) + y0.shape, y0.dtype), jnp.zeros((rows, 3), cdt), jnp.zeros((rows, 2), jnp.int32))


def _dtype_groups(p) -> list:
    """The packed carry's parts grouped by dtype, as lists of part indices: a checkpoint keeps one
    flat row per dtype, written in one update."""
    groups = {}
    for i, x in enumerate(p):
        groups.setdefault(jnp.dtype(x.dtype), []).append(i)
    return list(groups.values())


def _empty_checkpoints(length: int, rows: int, p0):
    """The loop's packed carry at the start of each segment: one row per segment, and a scratch
    row that the steps inside a segment write to; one matrix per dtype of the carry's parts."""
    segments = -(-length // rows)
    return tuple(jnp.zeros((segments + 1, sum(p0[i].size for i in group)), p0[group[0]].dtype)
                 for group in _dtype_groups(p0))


def _write_checkpoint(checkpoints, p, acc, rows: int):
    at = jnp.where(acc % rows == 0, acc // rows, checkpoints[0].shape[0] - 1)
    rows_ = [jnp.concatenate([jnp.ravel(p[i]) for i in group]) for group in _dtype_groups(p)]
    return tuple(lax.dynamic_update_index_in_dim(c, x, at, 0) for c, x in zip(checkpoints, rows_))


def _read_checkpoint(checkpoints, segment, like):
    """The packed carry kept for ``segment``, in the parts (shapes, dtypes) of ``like``."""
    parts = [None] * len(like)
    for c, group in zip(checkpoints, _dtype_groups(like)):
        row, at = c[segment], 0
        for i in group:
            parts[i] = row[at:at + like[i].size].reshape(like[i].shape)
            at += like[i].size
    return tuple(parts)


def _write_tape(tape: Tape, row, y, t, h, k_lo, k_hi, t_end) -> Tape:
    return Tape(lax.dynamic_update_index_in_dim(tape.y, y, row, 0),
                lax.dynamic_update_index_in_dim(tape.times, jnp.stack([t, h, t_end]).astype(tape.times.dtype), row, 0),
                lax.dynamic_update_index_in_dim(tape.outputs, jnp.stack([k_lo, k_hi]).astype(jnp.int32), row, 0))


def _retape(f, cfg: SolveConfig, checkpoints, segment, last, tape: Tape, args, times, nums):
    """Tape segment ``segment`` again, from its first carry (nothing when it is the ``last``,
    which the forward left on the tape): (the tape, the evaluations it took)."""
    plan = stage_plan(cfg.tableau)
    cdt = control_dtype()
    rows = tape.t.shape[0]
    direction = jnp.where(times[-1] > times[0], 1.0, -1.0).astype(cdt)
    advance = _advance(f, plan, times, direction, args, _attempt(f, plan, cfg, times, args, nums, cdt))
    p0 = _read_checkpoint(checkpoints, segment, _zero_carry(tape.y[0], cdt))
    end = (segment + 1) * rows

    def body(state):
        p, ys, tape = state
        c = _unpack(p)
        c2, ys, row = advance(c, ys)
        return _pack(c2), ys, _write_tape(tape, c.acc % rows, *row)

    scratch = jnp.zeros((times.shape[0],) + p0[0].shape, p0[0].dtype)  # the outputs, not needed
    p, _, tape = lax.while_loop(lambda s: (segment < last) & (s[0][4][2] < end), body, (p0, scratch, tape))
    return tape, p[4][1] - p0[4][1]


def backprop_backward(f: Callable, cfg: SolveConfig, treedef, diff: tuple, taped, n_steps, ct_ys, arg_leaves,
                      times, nums):
    """Reverse mode through the recorded steps, last to first.  A step's outputs are y_new (at
    its end) or the interpolant alpha y + gamma y_new + h (sum_j beta_j k_j + delta f_new),
    linear in (y, y_new, the stages, f_new): their cotangents are gathered into one cotangent
    for each (``_output_cotangents``), then (a, dparams) <- vjp of the recomputed step.

    With an FSAL tableau a step's first stage f(t, y) is the previous step's last stage: it is
    evaluated again, but not differentiated, and its cotangent goes to the previous step's last
    stage, as in the forward graph.  So a step costs s evaluations and s - 1 pullbacks (a
    pullback costs two to four evaluations), as diffrax's checkpointed steps; only the first
    step's f(t0, y0) is pulled back on its own, once (one evaluation more).  Keeping f(t, y) on
    the tape instead would save its evaluation but double the tape, allocated and zero-filled on
    every solve: measured slower with a tape of max_steps rows (glibc maps buffers of 32 MB and
    more afresh, so their page faults are paid on every call).  Other tableaus recompute and
    pull back every stage.

    ``taped`` is the forward's (tape, checkpoints).  The segments are walked from the last to
    the first; each but the last (left on the tape by the forward) is taped again from its
    first carry, and those evaluations are counted too.

    func's args are ``treedef.unflatten(arg_leaves)``; the leaves at the indices ``diff`` are
    differentiated.  Step sizes are constants (step-size control is not differentiated, as in
    torch).  Returns (dL/dy0, [dL/d leaf for each index in diff], the evaluations recomputed).
    """
    plan = stage_plan(cfg.tableau)
    dtype = ct_ys.dtype
    params = [arg_leaves[i] for i in diff]
    tape, checkpoints = taped
    times = jnp.asarray(times, tape.t.dtype)
    fsal = plan.fsal

    def args_with(p, leaves=arg_leaves):
        full = list(leaves)
        for i, leaf in zip(diff, p):
            full[i] = leaf
        return treedef.unflatten(full)

    def evaluation_pullback(batched, y, p, leaves, t, cotangent):
        """One evaluation's pullback (dL/dy, dL/dparams): it also decides how the steps' are
        computed.  (Everything it uses is an operand: ``choose`` compiles it on its own.)"""
        _, vjp = jax.vjp(lambda y, p: f(t.astype(dtype), y, args_with(p, leaves)), y, p)
        return pull_back(vjp, cotangent, batched)

    batched = choose(("evaluation", f, treedef, diff), evaluation_pullback, tape.y[0], params, list(arg_leaves),
                     tape.t[0], ct_ys[0])

    g, to_state, to_flat = _step_function(f)

    def step_pullback(tape, i, cotangents, with_end_slope):
        """(dL/dy, dL/df(t, y) (zero unless FSAL), dL/dparams) of the step on tape row i."""
        t, h = tape.t[i], tape.h[i]

        def step(y, f0, p):
            args = args_with(p)
            f0 = g(t.astype(dtype), y, args) if f0 is None else f0
            y_new, ks = rk_step(g, plan, t, y, f0, h, args, unroll=True)
            f_new = g((t + h).astype(dtype), y_new, args) if with_end_slope else jax.tree_util.tree_map(
                jnp.zeros_like, y_new)
            return y_new, tuple(ks), f_new

        a, ct_ks, ct_f = cotangents
        cotangents = (to_state(a), tuple(to_state(ct_ks[j]) for j in range(len(plan.c))), to_state(ct_f))
        y = to_state(tape.y[i])
        if fsal:  # f(t, y) evaluated, not differentiated: its cotangent is returned
            _, vjp = jax.vjp(step, y, g(t.astype(dtype), y, args_with(params)), params)
            da, df0, dp = pull_back(vjp, cotangents, batched)
            return to_flat(da), to_flat(df0), dp
        _, vjp = jax.vjp(lambda y, p: step(y, None, p), y, params)
        da, dp = pull_back(vjp, cotangents, batched)
        return to_flat(da), jnp.zeros_like(tape.y[i]), dp

    per_step = len(plan.c)
    rows = tape.t.shape[0]

    def step_back(tape, first, c):
        """Step i (tape row i - first), last to first."""
        i, a, g, nfe, ct_last = c
        r = i - first
        ct_y, ct_new, ct_ks, ct_f = _output_cotangents(plan, tape, r, times, ct_ys, tape.h[r])
        cotangents = (a + ct_new, ct_ks.at[-1].add(ct_last), ct_f)  # FSAL: the next step's f(t, y)
        if plan.needs_end_slope:  # f(t + h, y_new) only where the step interpolated
            slope = jnp.any(ct_f != 0)
            da, df0, dp = lax.cond(slope, lambda: step_pullback(tape, r, cotangents, True),
                                   lambda: step_pullback(tape, r, cotangents, False))
            nfe = nfe + slope.astype(jnp.int32)
        else:
            da, df0, dp = step_pullback(tape, r, cotangents, False)
        return i - 1, da + ct_y, jax.tree_util.tree_map(jnp.add, g, dp), nfe + per_step, df0

    n = jnp.asarray(n_steps, jnp.int32)
    last = jnp.maximum(n - 1, 0) // rows
    args = treedef.unflatten(list(arg_leaves))

    def segment_back(c):
        segment, tape, a, g, nfe, ct_last = c
        tape, retaped = _retape(f, cfg, checkpoints, segment, last, tape, args, times, nums)
        first = segment * rows
        inner = (jnp.minimum(n, first + rows) - 1, a, g, nfe + retaped, ct_last)
        _, a, g, nfe, ct_last = lax.while_loop(lambda c: c[0] >= first, partial(step_back, tape, first), inner)
        return segment - 1, tape, a, g, nfe, ct_last

    zeros = jnp.zeros_like(ct_ys[0])
    g0 = jax.tree_util.tree_map(jnp.zeros_like, params)
    start = (last, tape, zeros, g0, jnp.asarray(0, jnp.int32), zeros)
    _, tape, a, g, nfe, ct_first = lax.while_loop(lambda c: c[0] >= 0, segment_back, start)
    if fsal:  # the first step's f(t0, y0), once (its row sliced outside the cond, which would copy the tape)
        took = n > 0
        y_first, t_first = tape.y[0], tape.t[0]
        da, dp = lax.cond(took, lambda: evaluation_pullback(batched, y_first, params, arg_leaves, t_first, ct_first),
                          lambda: (zeros, g0))
        a, g, nfe = a + da, jax.tree_util.tree_map(jnp.add, g, dp), nfe + took.astype(jnp.int32)
    return a + ct_ys[0], g, nfe


def _step_function(f):
    """(g, flat -> g's state, g's state -> flat) for differentiating a recomputed step.

    A tuple state (the CNF's (z, log p)) is stepped as the tuple: the flat vector's slicing
    and concatenation around every evaluation cost a fifth of a CNF step's pullback (20.7 ->
    16.9 ms for one dopri5 step on benchmarks/jax_cost.py's CNF)."""
    if isinstance(f, FlatFunc) and f.layout.is_tuple:
        layout = f.layout
        return (lambda t, y, args: f._outputs(f.func(t, y, args))), layout.unflatten, layout.flatten
    return f, (lambda v: v), (lambda v: v)


def _output_cotangents(plan: StagePlan, tape: Tape, i, times, ct_ys, h):
    """The cotangents of step i's outputs gathered onto (y, y_new, the stages, f_new): an output
    at the step's end goes to y_new, one inside through the interpolation weights."""
    n = ct_ys.shape[1]
    s = len(plan.c)
    dtype = ct_ys.dtype

    def add(m, acc):
        ct_y, ct_new, ct_ks, ct_f = acc
        ct = ct_ys[m]
        end = times[m] == tape.t_end[i]
        alpha, betas, gamma, delta = plan.interpolation_weights((times[m] - tape.t[i]) / h)
        w = lambda x: jnp.where(end, 0.0, jnp.asarray(x)).astype(dtype)  # noqa: E731
        betas = jnp.stack([w(b) for b in betas])
        return (ct_y + w(alpha) * ct, ct_new + jnp.where(end, 1.0, w(gamma)).astype(dtype) * ct,
                ct_ks + (h.astype(dtype) * betas)[:, None] * ct[None, :], ct_f + (h * w(delta)).astype(dtype) * ct)

    zeros = jnp.zeros(n, dtype)
    return lax.fori_loop(tape.k_lo[i], tape.k_hi[i], add, (zeros, zeros, jnp.zeros((s, n), dtype), zeros))


def _ensure_fy(f, plan, c, args):
    """(f(t, y), the evaluations that took): the carried value (FSAL, or after a rejection) or a
    fresh evaluation."""
    if plan.fsal:
        return c.fy, 0
    fy = lax.cond(c.fy_valid, lambda: c.fy, lambda: f(c.t.astype(c.y.dtype), c.y, args))
    return fy, jnp.where(c.fy_valid, 0, 1).astype(jnp.int32)


def _adaptive_attempt(f, plan: StagePlan, cfg: SolveConfig, times, direction, args, rtol, atol, cdt):
    opts = cfg.opts
    safety, ifactor, dfactor = opts["safety"], opts["ifactor"], opts["dfactor"]
    exponent = plan.exponent
    n_new = len(plan.c) - 1

    step_to_outputs = opts["step_to_outputs"]

    def attempt(c: _Carry):
        t_next = times[c.k]
        t_stop = t_next if step_to_outputs else times[-1]  # interpolated outputs clip nothing before the end
        clipped = direction * (c.t + c.h - t_stop) >= -1e-12 * jnp.abs(c.h)
        h_try = jnp.where(clipped, t_stop - c.t, c.h)
        underflow = jnp.abs(h_try) <= 4 * jnp.spacing(jnp.maximum(jnp.abs(c.t), jnp.asarray(1.0, cdt)))
        fy, nfe = _ensure_fy(f, plan, c, args)
        y_new, ks = rk_step(f, plan, c.t, c.y, fy, h_try, args)
        ratio = error_ratio(plan, ks, c.y, y_new, h_try, rtol, atol, cfg.slices, cdt)
        finite = jnp.isfinite(ratio)
        ok = finite & ~underflow
        accept = ok & (ratio <= 1.0)
        reject = ok & (ratio > 1.0)
        grow = safety * ratio ** -exponent
        factor = jnp.where(ratio == 0.0, ifactor, jnp.minimum(ifactor, jnp.maximum(1.0, grow)))
        factor = jnp.where(c.rejected, 1.0, factor)
        h_prop = h_try * factor
        h_acc = jnp.where(~clipped | (jnp.abs(h_prop) > jnp.abs(c.h)), h_prop, c.h)
        h_rej = h_try * jnp.maximum(dfactor, grow)
        t_new = jnp.where(accept, jnp.where(clipped, t_stop, c.t + h_try), c.t)
        status = jnp.where(underflow, UNDERFLOW, jnp.where(finite, OK, NON_FINITE)).astype(jnp.int32)
        if plan.fsal:
            fy_out, fy_valid = jnp.where(accept, ks[-1], fy), jnp.asarray(True)
        else:
            fy_out, fy_valid = fy, ~accept
        c2 = _Carry(
            k=c.k,  # _emit moves it past the outputs this step reached
            t=t_new.astype(cdt),
            y=jnp.where(accept, y_new, c.y),
            fy=fy_out,
            fy_valid=fy_valid,
            h=jnp.where(accept, h_acc, jnp.where(reject, h_rej, c.h)).astype(cdt),
            rejected=jnp.where(accept, False, jnp.where(reject, True, c.rejected)),
            j=c.j,
            counters=_counted(c, 1, jnp.where(underflow, 0, nfe + n_new), accept, reject),
            status=status,
            info=jnp.where(status != OK, jnp.stack([c.t, t_next, jnp.abs(h_try)]), c.info).astype(cdt),
        )
        return c2, accept, h_try, ks

    return attempt


def _fixed_attempt(f, plan: StagePlan, step_size, times, args, cdt):
    n_new = len(plan.c) - 1

    def attempt(c: _Carry):
        t_prev, t_next = times[c.k - 1], times[c.k]
        n = jnp.maximum(1.0, jnp.ceil(jnp.abs(t_next - t_prev) / step_size - 1e-9))
        h = (t_next - t_prev) / n
        fy, nfe = _ensure_fy(f, plan, c, args)
        y_new, ks = rk_step(f, plan, c.t, c.y, fy, h, args)
        last = (c.j + 1).astype(cdt) >= n
        t_new = jnp.where(last, t_next, c.t + h)
        bad = last & ~jnp.all(jnp.isfinite(lax.stop_gradient(y_new)))
        status = jnp.where(bad, NON_FINITE_FIXED, OK).astype(jnp.int32)
        c2 = _Carry(
            k=c.k,  # _emit writes the output at the interval's end and moves past it
            t=t_new.astype(cdt),
            y=y_new,
            fy=ks[-1] if plan.fsal else fy,
            fy_valid=jnp.asarray(bool(plan.fsal)),
            h=c.h,
            rejected=c.rejected,
            j=jnp.where(last, 0, c.j + 1).astype(jnp.int32),
            counters=_counted(c, 1, nfe + n_new, 1),
            status=status,
            info=jnp.where(bad, jnp.stack([t_new, t_next, jnp.abs(h)]), c.info).astype(cdt),
        )
        return c2, jnp.asarray(True), h, ks

    return attempt


# jit-compiled entry point; f and cfg are static (hashable), so a repeated eager call with the
# same function, solver, tolerances and options reuses the compiled program.  Inside an outer
# jit this is simply inlined.
integrate_jit = jax.jit(integrate, static_argnums=(0, 1))


def fixed_step_count(times, step_size: float, cdt) -> int:
    """The number of steps a fixed-step solve over concrete ``times`` takes (as the loop counts)."""
    ts = np.asarray(times, dtype=cdt)
    d = np.abs(np.diff(ts)).astype(cdt)
    n = np.maximum(1.0, np.ceil(d / np.asarray(step_size, cdt) - np.asarray(1e-9, cdt)))
    return int(n.sum())
