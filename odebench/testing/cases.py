"""The conformance kit's cases, framework-free: closed-form problems, a gradient problem, bad
inputs.  A framework's adapter (odebench_torch.conformance, odebench_jax.conformance) builds
each in its arrays; the numbers here are the contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InvalidInputError, MaxStepsError, NonFiniteStateError, UnknownNameError


@dataclass(frozen=True)
class Problem:
    """A right-hand side with a closed-form solution (DETEST, Hull et al. 1972).  ``name`` is
    what an adapter builds: "A1" y' = -y, "A3" y' = y cos t, "B4" (3 components)."""

    name: str
    y0: tuple
    t1: float
    exact: Callable[[float], np.ndarray]


def _b4(t: float) -> np.ndarray:
    r = 2.0 + math.cos(t)
    return np.array([r * math.cos(t), r * math.sin(t), math.sin(t)])


PROBLEMS = (
    Problem("A1", (1.0,), 5.0, lambda t: np.array([math.exp(-t)])),
    Problem("A3", (1.0,), 10.0, lambda t: np.array([math.exp(math.sin(t))])),
    Problem("B4", (3.0, 0.0, 0.0), 5.0, _b4),
)


@dataclass(frozen=True, eq=False)
class GradCase:
    """f(t, y) = W2 tanh(W1 [y, t] + b1) + b2 on y0 [batch, dim], loss = sum_k w_k . y(t_k).

    With ``tuple_state`` the state is (y, l) with l' = -sum(f * y) per row, l(0) = 0, and the
    loss adds sum_k v_k . l(t_k): gradients must flow through both parts.
    """

    weights: dict
    y0: np.ndarray
    times: np.ndarray
    loss_weights: np.ndarray
    tuple_state: bool = False
    l_weights: np.ndarray = field(default=None)

    def with_weights(self, weights: dict) -> "GradCase":
        return GradCase(weights, self.y0, self.times, self.loss_weights, self.tuple_state, self.l_weights)

    def with_y0(self, y0: np.ndarray) -> "GradCase":
        return GradCase(self.weights, y0, self.times, self.loss_weights, self.tuple_state, self.l_weights)


def grad_case(tuple_state: bool = False, n_times: int = 4, dim: int = 2, hidden: int = 4, batch: int = 3) -> GradCase:
    """A small smooth problem whose gradients finite differences can check (seeded)."""
    rng = np.random.default_rng(11)
    weights = {"W1": rng.normal(size=(hidden, dim + 1)) * 0.8, "b1": rng.normal(size=hidden) * 0.5,
               "W2": rng.normal(size=(dim, hidden)) * 0.8, "b2": rng.normal(size=dim) * 0.5}
    times = np.linspace(0.0, 1.0, n_times)
    return GradCase(weights, rng.normal(size=(batch, dim)), times, rng.normal(size=(n_times, batch, dim)),
                    tuple_state, rng.normal(size=(n_times, batch, 1)) if tuple_state else None)


#: (case, the error odebench promises, the parts its one-line message must contain).  An adapter
#: performs each call in its framework.
BAD_INPUTS = (
    ("unknown solver", UnknownNameError, ("unknown solver 'rk45'", "known solvers: ", "dopri5")),
    ("rtol = 0", InvalidInputError, ("rtol must be a positive finite number",)),
    ("rtol < 0", InvalidInputError, ("rtol must be a positive finite number",)),
    ("rtol not a number", InvalidInputError, ("rtol must be a positive finite number, got 'abc'",)),
    ("atol = nan", InvalidInputError, ("atol must be a positive finite number",)),
    ("atol = inf", InvalidInputError, ("atol must be a positive finite number",)),
    ("repeated time", InvalidInputError, ("t must be strictly increasing or strictly decreasing",)),
    ("time not monotonic", InvalidInputError, ("t must be strictly increasing or strictly decreasing",)),
    ("nan time", InvalidInputError, ("t must hold finite times",)),
    ("output shape", InvalidInputError, ("func returned shape (3,)", "expected y0's shape (2,)")),
    ("output dtype", InvalidInputError, ("func returned dtype", "expected y0's dtype")),
    ("tuple length", InvalidInputError, ("returned 1", "y0 has 2")),
    ("integer y0", InvalidInputError, ("floating dtype",)),
    ("unknown option", InvalidInputError, ("unknown option(s) step_szie", "allowed: ")),
    ("fixed step without step_size", InvalidInputError, ("needs options={'step_size': h}",)),
    ("max_steps = 0", InvalidInputError, ("max_steps must be a positive integer",)),
    ("nan in y0", NonFiniteStateError, ("non-finite value (nan/inf) in y0",)),
    ("nan appearing in the state", NonFiniteStateError, ("non-finite value", "t=")),
    ("max_steps reached", MaxStepsError, ("max_steps=20", "before t=10")),
)
