"""One explicit Runge-Kutta loop that runs any Tableau in torch: only torch's arithmetic.

Why one loop: every solver is data, so every backend (backprop, adjoint, seminorm adjoint,
third-party ones) runs every registered tableau with no per-solver code.  What is not
arithmetic -- the stage plan, the option defaults, the status messages, the norms' layout --
comes from ``odebench.solve``, shared with the JAX loop.

Step-size control is done in Python floats (one ``.item()`` per step): the controller is then
never part of the autograd graph, and costs no tensor operations.  Outputs are obtained by
interpolation between step ends (dense output: the tableau's continuous extension, or a cubic
Hermite interpolant where it has none), so the number of output times costs no evaluations;
``step_to_outputs=True`` steps exactly onto every output time instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from odebench.solve import StagePlan, Status, dop853_combination, error_for, stage_plan
from odebench.specs import Tableau


class RMSNorm:
    """Root-mean-square norm; with ``slices`` the max over the RMS of each (mixed norm).

    A seminorm is a mixed norm whose slices leave some channels out (the adjoint's
    parameter cotangents, Kidger, Chen & Lyons 2021).
    """

    def __init__(self, slices: Optional[Sequence[tuple[int, int]]] = None) -> None:
        self.slices = list(slices) if slices else None

    def __call__(self, x: torch.Tensor) -> float:
        if self.slices is None:
            return float(torch.linalg.vector_norm(x)) / math.sqrt(max(x.numel(), 1))
        flat = x.reshape(-1)
        parts = torch.stack([torch.linalg.vector_norm(flat[a:b]) / math.sqrt(max(b - a, 1)) for a, b in self.slices])
        return float(parts.max())


@dataclass
class StepCounts:
    """Accepted and rejected steps, and the step |h| the controller proposed last (adaptive
    solves: an adjoint's backward segment can start with it)."""

    accepted: int = 0
    rejected: int = 0
    next_step: float = 0.0


def _combine(base: torch.Tensor, ks: Sequence[torch.Tensor], coeffs: Sequence[float], h: float) -> torch.Tensor:
    """base + h * sum_j coeffs[j] * ks[j], skipping zero coefficients."""
    out = None
    for c, k in zip(coeffs, ks):
        if c != 0.0:
            out = torch.add(base, k, alpha=c * h) if out is None else out.add_(k, alpha=c * h)
    return base if out is None else out


def _weighted_sum(ks: Sequence[torch.Tensor], coeffs: Sequence[float], h: float) -> torch.Tensor:
    """h * sum_j coeffs[j] * ks[j] (the local error estimate)."""
    out = None
    for c, k in zip(coeffs, ks):
        if c != 0.0:
            out = k * (c * h) if out is None else out.add_(k, alpha=c * h)
    return out if out is not None else torch.zeros_like(ks[0])


def _step(f, plan: StagePlan, t: float, y: torch.Tensor, f0: torch.Tensor, h: float):
    """One RK step: returns (y_new, stages)."""
    ks = [f0]
    y_new = None
    last = len(plan.c) - 1
    for i in range(1, len(plan.c)):
        yi = _combine(y, ks, plan.rows[i], h)
        if i == last and plan.fsal_input_is_solution:
            y_new = yi
        ks.append(f(t + plan.c[i] * h, yi))
    if y_new is None:
        y_new = _combine(y, ks, plan.b, h)
    return y_new, ks


def _error_ratio(plan: StagePlan, ks, y0, y1, h: float, rtol: float, atol: float, norm) -> float:
    with torch.no_grad():
        err = _weighted_sum(ks, plan.b_err, h)
        scale = torch.maximum(y0.abs(), y1.abs()).mul_(rtol).add_(atol)
        if plan.b_err_low is None:
            return norm(err.div_(scale))
        err_low = _weighted_sum(ks, plan.b_err_low, h)
        if not isinstance(norm, RMSNorm):  # a custom norm: combine its two values
            return dop853_combination(norm(err.div_(scale)), norm(err_low.div_(scale)))
        # both relative errors in one tensor, 2-norms of each (per slice), one host sync
        both = torch.stack((err, err_low)).div_(scale).reshape(2, -1)
        slices = norm.slices or [(0, both.shape[1])]
        if len(slices) == 1:
            a, b = slices[0]
            norms = [torch.linalg.vector_norm(both[:, a:b], dim=1).tolist()]
        else:
            norms = torch.stack([torch.linalg.vector_norm(both[:, a:b], dim=1) for a, b in slices]).tolist()
        return max(
            dop853_combination(n_err / math.sqrt(max(b - a, 1)), n_low / math.sqrt(max(b - a, 1)))
            for (a, b), (n_err, n_low) in zip(slices, norms)
        )


def initial_step(f, t0: float, y0, f0, direction: float, error_order: int, rtol, atol, norm) -> float:
    """Hairer, Nørsett & Wanner (1993), Solving ODEs I, sec. II.4: the automatic first step."""
    with torch.no_grad():
        scale = y0.abs().mul(rtol).add_(atol)
        d0 = norm(y0 / scale)
        d1 = norm(f0 / scale)
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        y1 = torch.add(y0, f0, alpha=direction * h0)
        f1 = f(t0 + direction * h0, y1)
        d2 = norm((f1 - f0).div_(scale)) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (error_order + 1))
    return min(100 * h0, h1)


def integrate(
    f: Callable,
    y0: torch.Tensor,
    times: Sequence[float],
    tableau: Tableau,
    rtol: float,
    atol: float,
    options: dict,
    norm: Callable[[torch.Tensor], float],
    counts: StepCounts,
) -> list[torch.Tensor]:
    """Solve y' = f(t, y) from times[0]; return y at every time in ``times`` (y0 first).

    ``f(t, y)`` takes t as a Python float.  ``options`` must come from resolve_options.
    Times may decrease (the adjoint integrates backwards).
    """
    if len(times) == 1:
        return [y0]
    plan = stage_plan(tableau)
    if not tableau.adaptive:
        return _integrate_fixed(f, plan, y0, times, options, counts)
    return _integrate_adaptive(f, plan, y0, times, rtol, atol, options, norm, counts)


def _integrate_fixed(f, plan: StagePlan, y0, times, options: dict, counts: StepCounts) -> list[torch.Tensor]:
    """Each interval between output times in equal steps no longer than ``step_size``."""
    out, t, y = [y0], float(times[0]), y0
    f_y = f(t, y)
    h_max, max_steps, steps = float(options["step_size"]), options["max_steps"], 0
    for t_next in times[1:]:
        n = max(1, math.ceil(abs(t_next - t) / h_max - 1e-9))
        h = (t_next - t) / n
        for j in range(n):
            if steps >= max_steps:
                raise error_for(Status.MAX_STEPS_FIXED, t, t_next, h, max_steps)
            if f_y is None:
                f_y = f(t, y)
            y, ks = _step(f, plan, t, y, f_y, h)
            t = t_next if j == n - 1 else t + h
            f_y = ks[-1] if plan.fsal else None
            steps += 1
        with torch.no_grad():
            if not bool(torch.isfinite(y).all()):
                raise error_for(Status.NON_FINITE_FIXED, t)
        out.append(y)
    counts.accepted += steps
    return out


def _integrate_adaptive(f, plan: StagePlan, y0, times, rtol: float, atol: float, options: dict, norm,
                        counts: StepCounts) -> list[torch.Tensor]:
    """Accept or reject each step by the embedded error estimate.  Values at the output times
    between step ends are interpolated (``_emit``); only the last output time clips a step,
    unless ``step_to_outputs`` makes every output time a step end."""
    out, t, y = [y0], float(times[0]), y0
    direction = 1.0 if times[-1] > times[0] else -1.0
    f_y = f(t, y)
    max_steps, steps, k = options["max_steps"], 0, 1
    if options["first_step"] is not None:
        h = direction * float(options["first_step"])
    else:
        h = direction * initial_step(f, t, y, f_y, direction, plan.tableau.error_order, rtol, atol, norm)
    rejected = False  # since the last accepted step
    for t_stop in (times[1:] if options["step_to_outputs"] else times[-1:]):
        while direction * (t_stop - t) > 0:
            if steps >= max_steps:
                raise error_for(Status.MAX_STEPS, t, times[k], h, max_steps)
            steps += 1
            clipped = direction * (t + h - t_stop) >= -1e-12 * abs(h)
            h_try = (t_stop - t) if clipped else h
            if abs(h_try) <= 4 * math.ulp(max(abs(t), 1.0)):
                raise error_for(Status.UNDERFLOW, t, times[k], h_try)
            if f_y is None:
                f_y = f(t, y)
            y_new, ks = _step(f, plan, t, y, f_y, h_try)
            ratio = _error_ratio(plan, ks, y, y_new, h_try, rtol, atol, norm)
            if not math.isfinite(ratio):
                raise error_for(Status.NON_FINITE, t, times[k], h_try)
            if ratio <= 1.0:
                counts.accepted += 1
                t_old, y_old, t = t, y, (t_stop if clipped else t + h_try)
                y, f_y = y_new, (ks[-1] if plan.fsal else None)
                k, f_y = _emit(out, f, plan, times, k, direction, t_old, y_old, ks, t, y, f_y)
            else:
                counts.rejected += 1
            h, rejected = _next_step(plan, options, ratio, h_try, h, clipped, rejected)
            y_new = ks = None  # a rejected step's stages must not stay alive through the retry
    counts.next_step = abs(h)
    return out


def _emit(out: list, f, plan: StagePlan, times, k: int, direction: float, t0: float, y0, ks, t1: float, y1,
          f_y) -> tuple:
    """Append the values at the output times the step [t0, t1] reached: y1 at t1 itself, the
    interpolant inside.  Returns the next output index and f(t1, y1) if it was evaluated (a
    Hermite interpolant of a non-FSAL tableau needs it; the next step reuses it)."""
    h = t1 - t0
    while k < len(times) and direction * (times[k] - t1) <= 0:
        if times[k] == t1:
            out.append(y1)
        else:
            if plan.needs_end_slope and f_y is None:
                f_y = f(t1, y1)
            out.append(_interpolate(plan, (times[k] - t0) / h, y0, ks, y1, f_y, h))
        k += 1
    return k, f_y


def _interpolate(plan: StagePlan, theta: float, y0, ks, y1, f1, h: float) -> torch.Tensor:
    """y(t0 + theta h) from the step's ends and stages (odebench.solve.StagePlan's weights)."""
    alpha, betas, gamma, delta = plan.interpolation_weights(theta)
    out = y0 * alpha
    if gamma != 0.0:
        out = out.add_(y1, alpha=gamma)
    if delta != 0.0:
        out = out.add_(f1, alpha=delta * h)
    return _combine(out, ks, betas, h)


def _next_step(plan: StagePlan, options: dict, ratio: float, h_try: float, h: float, clipped: bool,
               rejected: bool) -> tuple[float, bool]:
    """The controller: (the next step, whether a rejection is pending) after a step of ratio ``ratio``.

    Accepted: grow by safety * ratio^(-1/(q+1)) within [1, ifactor], not at all right after a
    rejection (HNW II.4, DOP853, scipy); a step shortened to land on an output time says little
    about the next one, so it keeps at least the step the controller had proposed.  Rejected:
    shrink, by at most dfactor.
    """
    grow = options["safety"] * ratio ** -plan.exponent if ratio > 0.0 else math.inf
    if ratio > 1.0:
        return h_try * max(options["dfactor"], grow), True
    factor = 1.0 if rejected else min(options["ifactor"], max(1.0, grow))
    return (h_try * factor if not clipped or abs(h_try * factor) > abs(h) else h), False
