"""What every solve fixes before it runs: the tableau, the tolerances and the resolved options.

One front door for every backend of every framework (torchdiffeq's ``_check_inputs`` plays
this part there): a backend's ``odeint`` builds a ``SolveSetup``, an adjoint derives its
backward solve's setup from it, and the integrators receive only checked, resolved values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..errors import InvalidInputError
from ..specs import SolverSpec, SolveStats, Tableau
from .checks import check_tolerance
from .options import resolve_adjoint_options, resolve_options


@dataclass(frozen=True, eq=False)
class SolveSetup:
    tableau: Tableau
    rtol: float
    atol: float
    options: dict

    @classmethod
    def checked(cls, tableau: Tableau, rtol: Any, atol: Any, options: Optional[dict],
                max_steps_default: Optional[int] = None) -> "SolveSetup":
        """The forward solve's setup; bad tolerances or options raise InvalidInputError."""
        return cls(tableau, check_tolerance("rtol", rtol), check_tolerance("atol", atol),
                   resolve_options(tableau, options, max_steps_default))

    def adjoint(self, rtol: Any = None, atol: Any = None, options: Optional[dict] = None) -> "SolveSetup":
        """The adjoint's backward solve: tolerances default to the forward ones, options to the
        forward options with a "warm" first step (see odebench.solve.options)."""
        return SolveSetup(
            self.tableau,
            check_tolerance("adjoint_rtol", self.rtol if rtol is None else rtol),
            check_tolerance("adjoint_atol", self.atol if atol is None else atol),
            resolve_adjoint_options(self.tableau, self.options, options),
        )


DEFAULT_RTOL = 1e-7  # torchdiffeq's defaults
DEFAULT_ATOL = 1e-9


class GradientBackend:
    """What every backend shares, whatever its framework: the call, its name, its counters
    (``last_stats``) and the solver lookup through the registry it is bound to.

    A framework's backend implements ``_odeint(func, y0, t, args, setup, stats, **method_kwargs)``.

    What a backend can do with its counts is declared here, with the defaults of a backend that
    counts inside its own call (every eager torch backend); a trainer or a task reads these
    attributes and never probes for them:

    ``returns_counts``
        ``odeint(..., return_counts=True, tally=...)`` gives a compiled program's counts as data
        (odebench's JAX backends): the forward counts returned with the solution, and every
        count of a differentiated solve as the cotangent of the ``tally`` input.  The JAX trainer
        and tasks take them from the program's outputs after the clock.
    ``callback_counts``
        The backend counts by a host callback per evaluation, inside the program, which costs
        time there (the JAX peers: diffrax, jax.experimental.ode own their solve loop, so only
        their dynamics can be counted).  Given a stats object of the JAX plugin's ``Uncounted``
        class it leaves the callbacks out: the trainer times such a program and counts in an
        untimed rerun of the same step.
    ``separate_counts``
        The counts tell forward evaluations from backward ones.  False: every evaluation of a
        program is counted as forward (a callback cannot tell which pass called it), and the
        trainer splits them as value_and_grad's count minus the forward-only run's.
    """

    framework = ""
    method = ""
    max_steps_default: Optional[int] = None  # None: the integrators' (10,000 adaptive)
    returns_counts = False
    callback_counts = False
    separate_counts = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.last_stats = SolveStats()
        self._registry = None

    def bind(self, registry) -> None:
        self._registry = registry

    def resolve_solver(self, solver) -> Tableau:
        """A Tableau given as itself or by its registered name."""
        if isinstance(solver, Tableau):
            return solver
        if self._registry is None:
            import odebench

            self._registry = odebench.registry()
        spec = self._registry.solver(solver)
        if isinstance(spec, SolverSpec):
            raise InvalidInputError(f"solver {solver!r} is not a tableau; {self.name} runs tableau solvers only")
        return spec

    def setup(self, solver, rtol, atol, options) -> SolveSetup:
        return SolveSetup.checked(self.resolve_solver(solver), rtol, atol, options, self.max_steps_default)

    def odeint(self, func: Callable, y0, t, args=None, *, solver="dopri5", rtol: float = DEFAULT_RTOL,
               atol: float = DEFAULT_ATOL, options: Optional[dict] = None, stats: Optional[SolveStats] = None,
               **method_kwargs):
        """y at every time in t (first axis), in y0's layout (an array or a tuple of arrays).

        ``stats``: the SolveStats the counts are added to (default: a new one); it is also
        ``last_stats`` afterwards.  ``method_kwargs``: the gradient method's own options.
        """
        stats = stats if stats is not None else SolveStats()
        self.last_stats = stats
        return self._odeint(func, y0, t, args, self.setup(solver, rtol, atol, options), stats, **method_kwargs)

    def _odeint(self, func, y0, t, args, setup: SolveSetup, stats: SolveStats, **method_kwargs):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
