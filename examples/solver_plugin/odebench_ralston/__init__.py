"""An odebench solver plugin: Ralston's 2nd-order method with an embedded Euler error estimate.

Ralston (1962) chose c2 = 2/3 to minimise the leading error coefficient of two-stage
second-order methods.  Registered as data, it runs on every odebench backend.
"""

from odebench.hookspecs import hookimpl
from odebench.specs import Tableau

RALSTON = Tableau(
    name="ralston",
    c=(0.0, 2 / 3),
    A=((), (2 / 3,)),
    b=(1 / 4, 3 / 4),
    b_err=(1 / 4 - 1.0, 3 / 4),  # b - b_hat with b_hat = (1, 0): forward Euler
    order=2,
    error_order=1,
    description="Ralston's two-stage second-order method, adaptive with an Euler estimate",
    reference="A. Ralston, Runge-Kutta methods with minimum error bounds, Math. Comp. 16 (1962)",
)


@hookimpl
def odebench_register_solvers(register):
    register(RALSTON)
