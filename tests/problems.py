"""Non-stiff test problems with closed-form solutions, from DETEST.

T. E. Hull, W. H. Enright, B. M. Fellen, A. E. Sedgwick, "Comparing numerical methods for
ordinary differential equations", SIAM J. Numer. Anal. 9(4) (1972) 603-637 -- problem classes
A (single equations), B (small systems) and D (the Kepler orbit with eccentricity e).

Each problem carries the right-hand side twice -- for torch (``f_torch(t, y)``, t a 0-d
tensor, y a 1-d tensor) and for numpy/scipy (``f_numpy(t, y)``) -- and the exact solution
``exact(t)`` as a float64 numpy array, computed independently of any ODE solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True)
class Problem:
    name: str
    y0: tuple
    t1: float  # integrate over [0, t1]
    f_torch: Callable
    f_numpy: Callable
    exact: Callable  # t (float) -> np.ndarray
    description: str = ""

    def y0_tensor(self, dtype=torch.float64) -> torch.Tensor:
        return torch.tensor(self.y0, dtype=dtype)

    def __repr__(self) -> str:  # short ids in pytest's parametrisation
        return self.name


# --- A1: y' = -y, y(0) = 1;  y = exp(-t) -------------------------------------------------

A1 = Problem(
    name="A1",
    y0=(1.0,),
    t1=10.0,
    f_torch=lambda t, y: -y,
    f_numpy=lambda t, y: -y,
    exact=lambda t: np.array([math.exp(-t)]),
    description="linear decay",
)

# --- A2: y' = -y^3 / 2, y(0) = 1;  y = 1 / sqrt(t + 1) -------------------------------------

A2 = Problem(
    name="A2",
    y0=(1.0,),
    t1=10.0,
    f_torch=lambda t, y: -0.5 * y**3,
    f_numpy=lambda t, y: -0.5 * y**3,
    exact=lambda t: np.array([1.0 / math.sqrt(t + 1.0)]),
    description="nonlinear (cubic) decay",
)

# --- A3: y' = y cos t, y(0) = 1;  y = exp(sin t) -------------------------------------------

A3 = Problem(
    name="A3",
    y0=(1.0,),
    t1=10.0,
    f_torch=lambda t, y: y * torch.cos(t),
    f_numpy=lambda t, y: y * np.cos(t),
    exact=lambda t: np.array([math.exp(math.sin(t))]),
    description="non-autonomous, oscillating",
)

# --- B4: three-dimensional, y(0) = (3, 0, 0) ------------------------------------------------
#   y1' = -y2 - y1 y3 / r,  y2' = y1 - y2 y3 / r,  y3' = y1 / r,  r = sqrt(y1^2 + y2^2).
# With y = (r cos t, r sin t, sin t):  y3' = cos t = y1 / r;  r' = (y1 y1' + y2 y2') / r = -y3
# = -sin t, so r = 2 + cos t (r(0) = 3);  the angle's rate (y1 y2' - y2 y1') / r^2 = 1.
# Hence y = ((2 + cos t) cos t, (2 + cos t) sin t, sin t).


def _b4_torch(t, y):
    y1, y2, y3 = y[0], y[1], y[2]
    r = torch.sqrt(y1 * y1 + y2 * y2)
    return torch.stack([-y2 - y1 * y3 / r, y1 - y2 * y3 / r, y1 / r])


def _b4_numpy(t, y):
    y1, y2, y3 = y
    r = math.sqrt(y1 * y1 + y2 * y2)
    return np.array([-y2 - y1 * y3 / r, y1 - y2 * y3 / r, y1 / r])


def _b4_exact(t):
    r = 2.0 + math.cos(t)
    return np.array([r * math.cos(t), r * math.sin(t), math.sin(t)])


B4 = Problem(
    name="B4",
    y0=(3.0, 0.0, 0.0),
    t1=10.0,
    f_torch=_b4_torch,
    f_numpy=_b4_numpy,
    exact=_b4_exact,
    description="3-dim nonlinear system, periodic",
)

# --- D: Kepler orbit with eccentricity e (DETEST D1..D5 are e = 0.1 .. 0.9) -----------------
#   y1' = y3, y2' = y4, y3' = -y1 / r^3, y4' = -y2 / r^3, r = sqrt(y1^2 + y2^2),
#   y(0) = (1 - e, 0, 0, sqrt((1 + e) / (1 - e))).
# Exact solution through the eccentric anomaly u, the root of Kepler's equation u - e sin u = t:
#   y = (cos u - e, sqrt(1 - e^2) sin u, -sin u / (1 - e cos u), sqrt(1 - e^2) cos u / (1 - e cos u)).


def kepler_anomaly(t: float, e: float) -> float:
    """The root u of u - e sin u = t (Newton from u = t, then to convergence; e < 1)."""
    u = t if e < 0.8 else math.pi * math.copysign(1.0, math.sin(t)) + (t - math.sin(t))
    for _ in range(100):
        du = (u - e * math.sin(u) - t) / (1.0 - e * math.cos(u))
        u -= du
        if abs(du) <= 1e-16 * max(1.0, abs(u)):
            break
    return u


def _kepler_exact(e):
    s = math.sqrt(1.0 - e * e)

    def exact(t):
        u = kepler_anomaly(t, e)
        den = 1.0 - e * math.cos(u)
        return np.array([math.cos(u) - e, s * math.sin(u), -math.sin(u) / den, s * math.cos(u) / den])

    return exact


def _kepler_torch(t, y):
    r3 = (y[0] * y[0] + y[1] * y[1]) ** 1.5
    return torch.stack([y[2], y[3], -y[0] / r3, -y[1] / r3])


def _kepler_numpy(t, y):
    r3 = (y[0] * y[0] + y[1] * y[1]) ** 1.5
    return np.array([y[2], y[3], -y[0] / r3, -y[1] / r3])


def kepler(e: float, name: str, t1: float = 10.0) -> Problem:
    return Problem(
        name=name,
        y0=(1.0 - e, 0.0, 0.0, math.sqrt((1.0 + e) / (1.0 - e))),
        t1=t1,
        f_torch=_kepler_torch,
        f_numpy=_kepler_numpy,
        exact=_kepler_exact(e),
        description=f"Kepler orbit, eccentricity {e}",
    )


D1 = kepler(0.1, "D1")
D3 = kepler(0.5, "D3")

ALL = (A1, A2, A3, B4, D1, D3)


# --- a small MLP shared by the cross-framework and dense-output tests -----------------------

def mlp_weights(dim=3, hidden=16, seed=0):
    """A small time-dependent MLP's weights drawn in numpy (the same in torch and JAX tests)."""
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(size=(hidden, dim + 1)) * 0.8, "b1": rng.normal(size=hidden) * 0.5,
            "W2": rng.normal(size=(dim, hidden)) * 0.8, "b2": rng.normal(size=dim) * 0.5}


class TorchMLP(torch.nn.Module):
    """f(t, y) = W2 tanh(W1 [y, t] + b1) + b2 with the weights of ``mlp_weights``."""

    def __init__(self, w):
        super().__init__()
        for k, v in w.items():
            setattr(self, k, torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)))

    def forward(self, t, y):
        tt = t.expand(*y.shape[:-1], 1)
        h = torch.tanh(torch.cat([y, tt], dim=-1) @ self.W1.T + self.b1)
        return h @ self.W2.T + self.b2
