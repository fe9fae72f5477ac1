"""A tableau as the integrators use it: its coefficients as Python floats, computed once.

Both integrators (torch and JAX) run the same stage plan, so they take the same steps; the
floats become literals in JAX's traced program and scalars in torch's loop.
"""

from __future__ import annotations

import functools

from ..specs import Tableau


class StagePlan:
    """c, the rows of A (padded with zeros to their stage), b, the error weights and the
    controller's exponent 1 / (error_order + 1) of one tableau."""

    def __init__(self, tableau: Tableau) -> None:
        self.tableau = tableau
        self.c = [float(x) for x in tableau.c]
        self.rows = [[float(x) for x in tableau.row(i)] for i in range(tableau.stages)]
        self.b = [float(x) for x in tableau.b]
        self.b_err = [float(x) for x in tableau.b_err] if tableau.adaptive else None
        # a second, lower-order estimate: Hairer's DOP853 error norm (see norms.dop853_combination)
        self.b_err_low = [float(x) for x in tableau.b_err_low] if tableau.b_err_low is not None else None
        self.exponent = 1.0 / (tableau.error_order + 1) if tableau.adaptive else None
        self.fsal = tableau.fsal
        # FSAL: the last stage is f(t + h, y_new), and its input is y_new itself
        self.fsal_input_is_solution = self.fsal and self.rows[-1] == self.b[:-1]
        self.dense = [[float(x) for x in row] for row in tableau.dense] if tableau.dense is not None else None
        # a Hermite cubic needs f at the step's end: the last stage of an FSAL tableau, else one evaluation
        self.needs_end_slope = self.dense is None and not self.fsal

    @property
    def interpolant(self) -> str:
        """What values between step ends come from: the tableau's own continuous extension, or
        the cubic Hermite interpolant of y and f at both ends (third order)."""
        return "dense" if self.dense is not None else "hermite"

    def interpolation_weights(self, theta):
        """(alpha, betas, gamma, delta) with y(t + theta h) = alpha y + gamma y_new + h (sum_j
        betas[j] k_j + delta f(t + h, y_new)), for theta in (0, 1].

        Arithmetic only, so theta may be a Python float (torch's controller) or a traced scalar
        (JAX): both frameworks interpolate with the same formula.  Dense: b_j(theta) =
        sum_m dense[j][m] theta^(m+1).  Hermite: the basis h00, h10, h01, h11 on (y, f) at both
        ends; an FSAL tableau's f(t + h, y_new) is its last stage, so delta folds into it.
        """
        if self.dense is not None:
            betas = [sum(c * theta ** (m + 1) for m, c in enumerate(row)) for row in self.dense]
            return 1.0, betas, 0.0, 0.0
        t2 = theta * theta
        t3 = t2 * theta
        h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + theta, 3 * t2 - 2 * t3, t3 - t2
        betas = [h10] + [0.0] * (len(self.c) - 1)
        if self.fsal:
            betas[-1] = h11
            return h00, betas, h01, 0.0
        return h00, betas, h01, h11


@functools.lru_cache(maxsize=None)
def stage_plan(tableau: Tableau) -> StagePlan:
    """The StagePlan of ``tableau`` (tableaus are frozen and hashable: one plan each)."""
    return StagePlan(tableau)
