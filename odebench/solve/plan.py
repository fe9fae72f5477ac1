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


@functools.lru_cache(maxsize=None)
def stage_plan(tableau: Tableau) -> StagePlan:
    """The StagePlan of ``tableau`` (tableaus are frozen and hashable: one plan each)."""
    return StagePlan(tableau)
