"""The DETEST problems with closed-form solutions, written once for every framework.

T. E. Hull, W. H. Enright, B. M. Fellen, A. E. Sedgwick, "Comparing numerical methods for
ordinary differential equations", SIAM J. Numer. Anal. 9(4) (1972) 603-637: classes A (single
equations), B (small systems), D (the Kepler orbit, eccentricity 0.1 ... 0.9) and E (second order
equations), integrated over t in [0, 20].

``rhs(t, y, xp)`` takes the array module (``torch`` or ``jax.numpy``) so that one definition
serves both frameworks; ``exact(t)`` is float64 numpy from the closed form (Kepler's equation
for the D problems), independent of any ODE solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Problem:
    name: str
    y0: tuple
    rhs: Callable  # (t, y, xp) -> dy/dt, xp the array module
    exact: Callable  # t (float) -> np.ndarray, float64
    description: str

    def exact_at(self, times) -> np.ndarray:
        """The closed form at every time, stacked on axis 0 (the layout of a solve's output)."""
        return np.stack([self.exact(float(t)) for t in times])


def _b4(t, y, xp):
    r = xp.sqrt(y[0] * y[0] + y[1] * y[1])
    return xp.stack([-y[1] - y[0] * y[2] / r, y[0] - y[1] * y[2] / r, y[0] / r])


def _b4_exact(t: float) -> np.ndarray:
    """r = 2 + cos t, angle t: y = (r cos t, r sin t, sin t)."""
    r = 2.0 + math.cos(t)
    return np.array([r * math.cos(t), r * math.sin(t), math.sin(t)])


def kepler_anomaly(t: float, e: float) -> float:
    """The eccentric anomaly u, root of u - e sin u = t (0 <= e < 1).

    Newton's method kept inside the bracket |u - M| <= e (M = t reduced to [-pi, pi]); a step
    that leaves it bisects instead, so it converges for every e < 1, 0.9 included.
    """
    turns = math.floor((t + math.pi) / (2.0 * math.pi))
    m = t - 2.0 * math.pi * turns
    lo, hi, u = m - e, m + e, m
    for _ in range(100):
        g = u - e * math.sin(u) - m
        if g > 0:
            hi = u
        else:
            lo = u
        step = u - g / (1.0 - e * math.cos(u))
        nxt = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(nxt - u) <= 1e-16 * max(1.0, abs(u)):
            u = nxt
            break
        u = nxt
    return u + 2.0 * math.pi * turns


def _kepler(t, y, xp):
    r3 = (y[0] * y[0] + y[1] * y[1]) ** 1.5
    return xp.stack([y[2], y[3], -y[0] / r3, -y[1] / r3])


def kepler(name: str, e: float) -> Problem:
    """DETEST D: y = (x, y, x', y') of the orbit with eccentricity e, starting at perihelion."""
    s = math.sqrt(1.0 - e * e)

    def exact(t: float) -> np.ndarray:
        u = kepler_anomaly(t, e)
        den = 1.0 - e * math.cos(u)
        return np.array([math.cos(u) - e, s * math.sin(u), -math.sin(u) / den, s * math.cos(u) / den])

    return Problem(name, (1.0 - e, 0.0, 0.0, math.sqrt((1.0 + e) / (1.0 - e))), _kepler, exact,
                   f"Kepler orbit, eccentricity {e:g}")


def _e1(t, y, xp):
    x = t + 1.0
    return xp.stack([y[1], -y[1] / x - (1.0 - 0.25 / (x * x)) * y[0]])


def _e1_exact(t: float) -> np.ndarray:
    """Bessel's equation of order 1/2 in x = t + 1: y = sqrt(2 / (pi x)) sin x, and y'."""
    x, c = t + 1.0, math.sqrt(2.0 / math.pi)
    return np.array([c * math.sin(x) / math.sqrt(x), c * (math.cos(x) / math.sqrt(x) - 0.5 * math.sin(x) / x**1.5)])


PROBLEMS = {p.name: p for p in (
    Problem("A1", (1.0,), lambda t, y, xp: -y, lambda t: np.array([math.exp(-t)]), "y' = -y (linear decay)"),
    Problem("A2", (1.0,), lambda t, y, xp: -0.5 * y**3, lambda t: np.array([1.0 / math.sqrt(t + 1.0)]),
            "y' = -y^3/2 (nonlinear decay)"),
    Problem("A3", (1.0,), lambda t, y, xp: y * xp.cos(t), lambda t: np.array([math.exp(math.sin(t))]),
            "y' = y cos t (oscillating, non-autonomous)"),
    Problem("A4", (1.0,), lambda t, y, xp: 0.25 * y * (1.0 - y / 20.0),
            lambda t: np.array([20.0 / (1.0 + 19.0 * math.exp(-t / 4.0))]), "y' = y/4 (1 - y/20) (logistic)"),
    Problem("B4", (3.0, 0.0, 0.0), _b4, _b4_exact, "3-dim nonlinear system, periodic"),
    *(kepler(f"D{i + 1}", e) for i, e in enumerate((0.1, 0.3, 0.5, 0.7, 0.9))),
    Problem("E1", tuple(_e1_exact(0.0)), _e1, _e1_exact, "Bessel's equation of order 1/2"),
)}
