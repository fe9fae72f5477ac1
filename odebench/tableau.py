"""A Butcher tableau: an explicit Runge-Kutta method as data that checks itself when built.

What follows from the coefficients is derived, not declared: the stage count, and whether the
method is FSAL (its last stage is f(t + h, y_new), so it is the next step's first).  What the
coefficients must satisfy is checked (as diffrax's tableaus do): A strictly lower triangular,
row sums equal to c, sum(b) = 1, error weights summing to 0, a dense output that ends at b.
A tableau that fails is refused with ``odebench.errors.InvalidTableauError`` when it is
built, so a third-party plugin's typo never reaches a solve.  (The full order conditions are
checked for the built-in tableaus in ``tests/test_tableaus.py``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .errors import InvalidTableauError

_RELATIVE = 16 * 2.0**-52  # a sum may be off by a few roundings of its largest terms


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta method as data.

    ``A`` is strictly lower triangular (row i holds a_i0 .. a_i(i-1); trailing entries may be
    omitted).  ``b_err`` holds the error weights b - b_hat of the embedded method (None for a
    fixed-step method), so the local error estimate is h * sum_j b_err[j] * k_j.
    ``order`` is the order of the propagated solution, ``error_order`` the order of the
    embedded solution (it sets the step-size controller's exponent 1 / (error_order + 1)).
    ``fsal`` is derived (c_s = 1, the last row of A equals b, b_s = 0); a value given must agree.
    ``dense``: optional dense-output coefficients, one row per stage, each row the polynomial
    coefficients in theta (theta^1, theta^2, ...) of b_j(theta) for y(t + theta h);
    ``dense_order`` their order (default: order - 1).
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
    fsal: Optional[bool] = None
    dense: Optional[tuple] = None
    description: str = ""
    reference: str = ""
    b_err_low: Optional[tuple] = None
    dense_order: Optional[int] = None

    def __post_init__(self) -> None:
        self._check_shapes()
        self._check_sums()
        derived = self._fsal_structure()
        if self.fsal is not None and bool(self.fsal) != derived:
            self._refuse(f"declared fsal={self.fsal}, but its coefficients say {derived} "
                         "(FSAL: c[-1] = 1, the last row of A equals b, b[-1] = 0)")
        object.__setattr__(self, "fsal", derived)

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None

    @property
    def interpolant_order(self) -> int:
        """The order of values between step ends: the continuous extension's, or 3 for the cubic
        Hermite interpolant the integrators use where a tableau has none."""
        if self.dense is None:
            return 3
        return self.dense_order if self.dense_order is not None else self.order - 1

    @property
    def interpolates_by_default(self) -> bool:
        """Whether outputs between step ends are interpolated unless asked otherwise: when the
        interpolant is within one order of the method.  A cubic Hermite between the long steps
        of an eighth-order method would be far less accurate than the method."""
        return self.adaptive and self.interpolant_order >= self.order - 1

    def row(self, i: int) -> tuple:
        """Row i of A padded with zeros to length i."""
        r = tuple(self.A[i])
        return r + (0.0,) * (i - len(r))

    # -- checks ------------------------------------------------------------------------

    def _refuse(self, what: str) -> None:
        raise InvalidTableauError(f"tableau {self.name!r}: {what}")

    def _check_shapes(self) -> None:
        s = len(self.c)
        if s < 1 or len(self.b) != s or len(self.A) != s:
            self._refuse(f"c, A and b must have one entry per stage ({s})")
        for i, row in enumerate(self.A):
            if len(row) > i:
                self._refuse(f"row {i} of A is not strictly lower triangular")
        if self.b_err is not None:
            if len(self.b_err) != s:
                self._refuse(f"b_err needs {s} entries")
            if self.error_order is None:
                self._refuse("an adaptive tableau needs error_order")
        if self.b_err_low is not None:
            if self.b_err is None:
                self._refuse("b_err_low needs b_err (it is a second error estimate)")
            if len(self.b_err_low) != s:
                self._refuse(f"b_err_low needs {s} entries")
        if self.dense is not None and len(self.dense) != s:
            self._refuse(f"dense needs one row per stage ({s})")
        numbers = (*self.c, *self.b, *(self.b_err or ()), *(self.b_err_low or ()),
                   *(x for r in self.A for x in r), *(x for r in (self.dense or ()) for x in r))
        if not all(math.isfinite(float(x)) for x in numbers):
            self._refuse("non-finite coefficient")

    def _check_sums(self) -> None:
        """Consistency: sum_j a_ij = c_i, sum b = 1, error weights sum to 0, b_j(1) = b_j."""
        for i in range(self.stages):
            if not _sums_to(self.row(i), self.c[i]):
                self._refuse(f"row {i} of A sums to {math.fsum(self.row(i))!r}, not c[{i}] = {self.c[i]!r}")
        if not _sums_to(self.b, 1.0):
            self._refuse(f"the weights b sum to {math.fsum(self.b)!r}, not 1 (a method must be consistent)")
        for label, weights in (("b_err", self.b_err), ("b_err_low", self.b_err_low)):
            if weights is not None and not _sums_to(weights, 0.0):
                self._refuse(f"the error weights {label} sum to {math.fsum(weights)!r}, not 0 "
                             "(they are b - b_hat of two consistent methods)")
        for j, coefficients in enumerate(self.dense or ()):
            if not _sums_to(coefficients, self.b[j], slack=4):
                self._refuse(f"dense row {j} gives b_{j}(1) = {math.fsum(coefficients)!r}, not b[{j}] = {self.b[j]!r}")

    def _fsal_structure(self) -> bool:
        last = self.stages - 1
        return (self.stages > 1 and float(self.c[-1]) == 1.0 and float(self.b[-1]) == 0.0
                and all(float(x) == float(y) for x, y in zip(self.row(last), self.b[:-1])))


def _sums_to(terms, target: float, slack: float = 1.0) -> bool:
    """math.fsum(terms) == target up to rounding in the terms (relative to their magnitudes)."""
    values = [float(x) for x in terms]
    scale = 1.0 + sum(abs(x) for x in values) + abs(float(target))
    return abs(math.fsum(values) - float(target)) <= slack * _RELATIVE * scale
