"""The error norms' layout, framework-free: which channels of the flat state each RMS covers.

The integrators measure a step's error with an RMS norm, or for a tuple state or the adjoint's
augmented state with a *mixed* norm: the max over slices of each slice's RMS.  The adjoint's
layout [y, a, dL/dθ per parameter] and the seminorm's (without the parameter channels, Kidger,
Chen & Lyons 2021) are defined once here, so torch and JAX control the same error.
"""

from __future__ import annotations

import math
from typing import Sequence


def slices_of(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive (start, stop) slices of a flat vector made of parts of these sizes."""
    out, start = [], 0
    for n in sizes:
        out.append((start, start + int(n)))
        start += int(n)
    return out


def adjoint_norm_slices(n: int, param_sizes: Sequence[int], seminorm: bool) -> list[tuple[int, int]]:
    """The backward solve's mixed norm over s = [y (n), a (n), g (parameters)]: the RMS of y, of a,
    and -- unless ``seminorm`` -- of each parameter's cotangent (as torchdiffeq's adjoint)."""
    slices = [(0, n), (n, 2 * n)]
    if not seminorm:
        slices += [(2 * n + a, 2 * n + b) for a, b in slices_of(param_sizes)]
    return slices


def dop853_combination(e: float, e_low: float) -> float:
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

