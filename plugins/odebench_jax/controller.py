"""Step-size control: one step attempt of an adaptive or a fixed-step solve, carry to carry."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from odebench.solve import StagePlan

from .carry import Carry, counted
from .config import NON_FINITE, NON_FINITE_FIXED, OK, UNDERFLOW, SolveConfig
from .step import error_ratio, rk_step


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

    def attempt(c: Carry):
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
        c2 = Carry(
            k=c.k,  # _emit moves it past the outputs this step reached
            t=t_new.astype(cdt),
            y=jnp.where(accept, y_new, c.y),
            fy=fy_out,
            fy_valid=fy_valid,
            h=jnp.where(accept, h_acc, jnp.where(reject, h_rej, c.h)).astype(cdt),
            rejected=jnp.where(accept, False, jnp.where(reject, True, c.rejected)),
            j=c.j,
            counters=counted(c, 1, jnp.where(underflow, 0, nfe + n_new), accept, reject),
            status=status,
            info=jnp.where(status != OK, jnp.stack([c.t, t_next, jnp.abs(h_try)]), c.info).astype(cdt),
        )
        return c2, accept, h_try, ks

    return attempt


def _fixed_attempt(f, plan: StagePlan, step_size, times, args, cdt):
    n_new = len(plan.c) - 1

    def attempt(c: Carry):
        t_prev, t_next = times[c.k - 1], times[c.k]
        n = jnp.maximum(1.0, jnp.ceil(jnp.abs(t_next - t_prev) / step_size - 1e-9))
        h = (t_next - t_prev) / n
        fy, nfe = _ensure_fy(f, plan, c, args)
        y_new, ks = rk_step(f, plan, c.t, c.y, fy, h, args)
        last = (c.j + 1).astype(cdt) >= n
        t_new = jnp.where(last, t_next, c.t + h)
        bad = last & ~jnp.all(jnp.isfinite(lax.stop_gradient(y_new)))
        status = jnp.where(bad, NON_FINITE_FIXED, OK).astype(jnp.int32)
        c2 = Carry(
            k=c.k,  # _emit writes the output at the interval's end and moves past it
            t=t_new.astype(cdt),
            y=y_new,
            fy=ks[-1] if plan.fsal else fy,
            fy_valid=jnp.asarray(bool(plan.fsal)),
            h=c.h,
            rejected=c.rejected,
            j=jnp.where(last, 0, c.j + 1).astype(jnp.int32),
            counters=counted(c, 1, nfe + n_new, 1),
            status=status,
            info=jnp.where(bad, jnp.stack([t_new, t_next, jnp.abs(h)]), c.info).astype(cdt),
        )
        return c2, jnp.asarray(True), h, ks

    return attempt



def make_attempt(f, plan: StagePlan, cfg: SolveConfig, times, args, nums, cdt):
    """The loop's step attempt, carry -> (next carry, accepted, h used, stages)."""
    if plan.tableau.adaptive:
        direction = jnp.where(times[-1] > times[0], 1.0, -1.0).astype(cdt)
        return _adaptive_attempt(f, plan, cfg, times, direction, args, nums[0], nums[1], cdt)
    return _fixed_attempt(f, plan, nums[2], times, args, cdt)


def fixed_step_count(times, step_size: float, cdt) -> int:
    """The number of steps a fixed-step solve over concrete ``times`` takes (as the loop counts)."""
    ts = np.asarray(times, dtype=cdt)
    d = np.abs(np.diff(ts)).astype(cdt)
    n = np.maximum(1.0, np.ceil(d / np.asarray(step_size, cdt) - np.asarray(1e-9, cdt)))
    return int(n.sum())
