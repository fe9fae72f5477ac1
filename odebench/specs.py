"""Plain, framework-free descriptions of what plugins register.

The host only ever handles these dataclasses; the objects that do numerical work (a torch
or jax backend, a task's model) are produced by the ``load`` callables they carry, so that
importing odebench never imports a framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

Row = tuple  # one row of a Butcher matrix


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta method as data.

    ``A`` is strictly lower triangular (row i holds a_i0 .. a_i(i-1); trailing entries may be
    omitted).  ``b_err`` holds the error weights b - b_hat of the embedded method (None for a
    fixed-step method), so the local error estimate is h * sum_j b_err[j] * k_j.
    ``order`` is the order of the propagated solution, ``error_order`` the order of the
    embedded solution (it sets the step-size controller's exponent 1 / (error_order + 1)).
    ``fsal``: the last stage is evaluated at (t + h, y_new), so it is the next step's first.
    ``dense``: optional dense-output coefficients, one row per stage, each row the polynomial
    coefficients in theta (theta^1, theta^2, ...) of b_j(theta) for y(t + theta h).
    ``b_err_low``: optional second, lower-order error weights; when given, the error norm is
    Hairer's DOP853 combination of the two estimates err = h * sum_j b_err[j] k_j and
    err_low = h * sum_j b_err_low[j] k_j:  e^2 / sqrt(e^2 + 0.01 e_low^2)  with e, e_low their
    (RMS) norms relative to the tolerances.  It behaves like e^2 / (0.1 e_low), so
    ``error_order`` is then the order q of that combination, O(h^(q+1)) (7 for DOP853, whose
    estimates are O(h^6) and O(h^4)), not the order of either embedded solution.
    """

    name: str
    c: tuple
    A: tuple
    b: tuple
    order: int
    b_err: Optional[tuple] = None
    error_order: Optional[int] = None
    fsal: bool = False
    dense: Optional[tuple] = None
    description: str = ""
    reference: str = ""
    b_err_low: Optional[tuple] = None

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.b) != s or len(self.A) != s:
            raise ValueError(f"tableau {self.name!r}: c, A and b must have one entry per stage ({s})")
        for i, row in enumerate(self.A):
            if len(row) > i:
                raise ValueError(f"tableau {self.name!r}: row {i} of A is not strictly lower triangular")
        if self.b_err is not None:
            if len(self.b_err) != s:
                raise ValueError(f"tableau {self.name!r}: b_err needs {s} entries")
            if self.error_order is None:
                raise ValueError(f"tableau {self.name!r}: an adaptive tableau needs error_order")
        if self.b_err_low is not None:
            if self.b_err is None:
                raise ValueError(f"tableau {self.name!r}: b_err_low needs b_err (it is a second error estimate)")
            if len(self.b_err_low) != s:
                raise ValueError(f"tableau {self.name!r}: b_err_low needs {s} entries")
        if self.dense is not None and len(self.dense) != s:
            raise ValueError(f"tableau {self.name!r}: dense needs one row per stage ({s})")
        if not all(math.isfinite(float(x)) for x in (*self.c, *self.b, *(self.b_err or ()), *(self.b_err_low or ()))):
            raise ValueError(f"tableau {self.name!r}: non-finite coefficient")

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None

    def row(self, i: int) -> tuple:
        """Row i of A padded with zeros to length i."""
        r = tuple(self.A[i])
        return r + (0.0,) * (i - len(r))


@dataclass(frozen=True)
class SolverSpec:
    """A solver that is not a tableau: one implementation per framework, loaded lazily."""

    name: str
    implementations: dict  # framework -> zero-argument loader returning the implementation
    adaptive: bool = True
    order: Optional[int] = None
    description: str = ""


@dataclass(frozen=True)
class BackendSpec:
    """A gradient method in one framework, named ``<framework>-<method>``.

    ``load()`` returns the backend object (it may import the framework).  ``requires`` names
    the import that must succeed for it to work, so a missing framework gives a clear error
    instead of a traceback.
    """

    name: str
    framework: str
    method: str
    load: Callable[[], Any]
    description: str = ""
    requires: tuple = ()


@dataclass(frozen=True)
class TaskSpec:
    """A benchmark task: its options dataclass and, per framework, a loader of its implementation."""

    name: str
    description: str
    options: type
    frameworks: dict  # framework -> zero-argument loader returning the task implementation
    metric_name: str = "metric"
    metric_higher_is_better: bool = False
    paper_options: dict = field(default_factory=dict)


@dataclass
class SolveStats:
    """Exact counts of one or more solves, read after the call (backward ones after backward)."""

    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_accepted: int = 0
    steps_rejected: int = 0
    steps_accepted_backward: int = 0
    steps_rejected_backward: int = 0

    def reset(self) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}




class TaskProblem(Protocol):
    """What a task's framework loader builds for one cell (``impl.setup(options, seed=, device=, dtype=)``).

    The harness drives it through the framework's runtime; nothing here names a framework.
    ``model`` holds the trainable parameters (an nn.Module in torch, a pytree in jax).
    ``loss(batch, odeint)`` and ``evaluate(odeint)`` receive the backend's odeint with solver,
    tolerances and counters already bound, so a task never chooses its gradient method.
    """

    model: Any
    optimizer: tuple  # (name, kwargs), e.g. ("adam", {"lr": 1e-3})

    def batch(self, iteration: int) -> Any: ...

    def loss(self, batch: Any, odeint: Callable) -> Any: ...

    def evaluate(self, odeint: Callable) -> float: ...

    def extras(self) -> dict: ...

    def artifacts(self, odeint: Callable, out_dir: Any, stem: str) -> list: ...
