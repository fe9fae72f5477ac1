"""One explicit Runge-Kutta loop that runs any Tableau in torch.

Why one loop: every solver is data, so every backend (backprop, adjoint, seminorm adjoint,
third-party ones) runs every registered tableau with no per-solver code.

Step-size control is done in Python floats (one ``.item()`` per step): the controller is then
never part of the autograd graph, and costs no tensor operations.  Outputs are obtained by
stepping exactly onto every requested time (no interpolation), so every output carries the
method's full order and the adjoint's segments start from exact forward values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from odebench.errors import MaxStepsError, NonFiniteStateError
from odebench.options import resolve_options  # noqa: F401  (re-exported for the backends)
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


class _Plan:
    """A tableau's coefficients as Python floats, precomputed once per solve."""

    def __init__(self, tableau: Tableau) -> None:
        self.tableau = tableau
        self.c = [float(x) for x in tableau.c]
        self.rows = [[float(x) for x in tableau.row(i)] for i in range(tableau.stages)]
        self.b = [float(x) for x in tableau.b]
        self.b_err = [float(x) for x in tableau.b_err] if tableau.adaptive else None
        # a second, lower-order estimate: Hairer's DOP853 error norm (see _error_ratio)
        self.b_err_low = [float(x) for x in tableau.b_err_low] if tableau.b_err_low is not None else None
        self.exponent = 1.0 / (tableau.error_order + 1) if tableau.adaptive else None
        self.fsal = tableau.fsal
        # FSAL: the last stage is f(t+h, y_new) and y_new equals that stage's input
        self.fsal_input_is_solution = self.fsal and self.rows[-1] == self.b[:-1]


def _step(f, plan: _Plan, t: float, y: torch.Tensor, f0: torch.Tensor, h: float):
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


def _error_ratio(plan: _Plan, ks, y0, y1, h: float, rtol: float, atol: float, norm) -> float:
    with torch.no_grad():
        err = _weighted_sum(ks, plan.b_err, h)
        scale = torch.maximum(y0.abs(), y1.abs()).mul_(rtol).add_(atol)
        if plan.b_err_low is None:
            return norm(err.div_(scale))
        err_low = _weighted_sum(ks, plan.b_err_low, h)
        if not isinstance(norm, RMSNorm):  # a custom norm: combine its two values
            return _dop853_combination(norm(err.div_(scale)), norm(err_low.div_(scale)))
        # both relative errors in one tensor, 2-norms of each (per slice), one host sync
        both = torch.stack((err, err_low)).div_(scale).reshape(2, -1)
        slices = norm.slices or [(0, both.shape[1])]
        if len(slices) == 1:
            a, b = slices[0]
            norms = [torch.linalg.vector_norm(both[:, a:b], dim=1).tolist()]
        else:
            norms = torch.stack([torch.linalg.vector_norm(both[:, a:b], dim=1) for a, b in slices]).tolist()
        return max(
            _dop853_combination(n_err / math.sqrt(max(b - a, 1)), n_low / math.sqrt(max(b - a, 1)))
            for (a, b), (n_err, n_low) in zip(slices, norms)
        )


def _dop853_combination(e: float, e_low: float) -> float:
    """Hairer's DOP853 error norm from the RMS norms of its two estimates:
    e^2 / sqrt(e^2 + 0.01 e_low^2), written so that it cannot overflow; 0 when both are 0
    (as in scipy), non-finite when either is (the caller then reports a non-finite state).

    With e = ||err / s||_2 / sqrt(n) this is scipy's DOP853 ``_estimate_error_norm``,
    |h| ||E5 K / s||^2 / sqrt(n (||E5 K / s||^2 + 0.01 ||E3 K / s||^2)), since err = h E5 K.
    """
    if not (math.isfinite(e) and math.isfinite(e_low)):
        return e + e_low  # inf or nan
    if e == 0.0:
        return 0.0
    return e * (e / math.hypot(e, 0.1 * e_low))


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
    plan = _Plan(tableau)
    out = [y0]
    if len(times) == 1:
        return out
    direction = 1.0 if times[-1] > times[0] else -1.0
    t, y = float(times[0]), y0
    f_y = f(t, y)
    max_steps = options["max_steps"]
    steps = 0

    if not tableau.adaptive:
        h_max = float(options["step_size"])
        for t_next in times[1:]:
            n = max(1, math.ceil(abs(t_next - t) / h_max - 1e-9))
            h = (t_next - t) / n
            for j in range(n):
                if steps >= max_steps:
                    raise MaxStepsError(f"max_steps={max_steps} reached at t={t:.10g} before t={t_next:.10g}")
                if f_y is None:
                    f_y = f(t, y)
                y, ks = _step(f, plan, t, y, f_y, h)
                t = t_next if j == n - 1 else t + h
                f_y = ks[-1] if plan.fsal else None
                steps += 1
            with torch.no_grad():
                if not bool(torch.isfinite(y).all()):
                    raise NonFiniteStateError(f"non-finite value (nan/inf) in the state at t={t:.10g}")
            out.append(y)
        counts.accepted += steps
        return out

    safety, ifactor, dfactor = options["safety"], options["ifactor"], options["dfactor"]
    if options["first_step"] is not None:
        h = direction * float(options["first_step"])
    else:
        h = direction * initial_step(f, t, y, f_y, direction, tableau.error_order, rtol, atol, norm)
    rejected = False  # since the last accepted step
    for t_next in times[1:]:
        while direction * (t_next - t) > 0:
            if steps >= max_steps:
                raise MaxStepsError(
                    f"max_steps={max_steps} reached at t={t:.10g} before t={t_next:.10g} "
                    f"(last step {abs(h):.3g}); raise options['max_steps'] or loosen rtol/atol"
                )
            steps += 1
            clipped = direction * (t + h - t_next) >= -1e-12 * abs(h)
            h_try = (t_next - t) if clipped else h
            if abs(h_try) <= 4 * math.ulp(max(abs(t), 1.0)):
                raise NonFiniteStateError(f"step size underflow ({abs(h_try):.3g}) at t={t:.10g}: the problem is stiff or the dynamics blow up")
            if f_y is None:
                f_y = f(t, y)
            y_new, ks = _step(f, plan, t, y, f_y, h_try)
            ratio = _error_ratio(plan, ks, y, y_new, h_try, rtol, atol, norm)
            if not math.isfinite(ratio):
                raise NonFiniteStateError(f"non-finite value (nan/inf) in the state at t={t:.10g} (step {h_try:.3g})")
            if ratio <= 1.0:
                counts.accepted += 1
                t = t_next if clipped else t + h_try
                y = y_new
                f_y = ks[-1] if plan.fsal else None
                factor = ifactor if ratio == 0.0 else min(ifactor, max(1.0, safety * ratio ** -plan.exponent))
                if rejected:  # HNW II.4 / DOP853 / scipy: no growth right after a rejection
                    factor = 1.0
                    rejected = False
                # a step shortened to land on an output time says little about the next one:
                # keep at least the step the controller had proposed
                h = h_try * factor if not clipped or abs(h_try * factor) > abs(h) else h
            else:
                counts.rejected += 1
                rejected = True
                h = h_try * max(dfactor, safety * ratio ** -plan.exponent)
        out.append(y)
    counts.next_step = abs(h)
    return out
