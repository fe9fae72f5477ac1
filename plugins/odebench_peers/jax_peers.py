"""diffrax and jax.experimental.ode as odebench backends: odebench's front door (the checks, the
closure conversion, the counters; ``odebench_jax``'s public names) around the library's own solve.

Evaluations are counted at the dynamics by a host callback.  A callback cannot tell a forward
evaluation from one the library's backward pass makes, so a peer reports every evaluation of
a program as forward (``separate_counts = False``); the JAX trainer, which also runs the
forward alone each step, then splits them: backward = value_and_grad's count - forward's.
A callback costs time inside the program (about 145 us on the development machine), so the
trainer times programs without them (stats ``Uncounted``) and counts in an untimed rerun of the
same step.  These are capabilities the peers declare (``callback_counts``, ``separate_counts``
on odebench.solve's GradientBackend).  odebench's own JAX backends need none of this: they
return their counts from the program as data.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from odebench.errors import InvalidInputError, MaxStepsError, NonFiniteStateError
from odebench.solve import GradientBackend, SolveSetup
from odebench.specs import SolveStats
from odebench_jax import Uncounted, check_inputs, control_dtype, is_tracer

from .solvers import DIFFRAX, JAX_ODE


class JaxPeer(GradientBackend):
    """A JAX library behind odebench's call; subclasses implement ``_solve``."""

    framework = "jax"
    library = ""
    names: dict = {}
    separate_counts = False  # capabilities declared on GradientBackend (odebench.solve.setup)
    callback_counts = True

    def __init__(self, name: str, method: str) -> None:
        super().__init__(name)
        self.method = method
        self.supported_solvers = tuple(self.names)
        self.last_error = None

    def setup(self, solver, rtol, atol, options) -> SolveSetup:
        name = getattr(solver, "name", solver)
        setup = super().setup(solver, rtol, atol, options)
        if name not in self.names:
            raise InvalidInputError(f"{self.name} does not run solver {name!r}; it runs: {', '.join(self.names)}")
        return setup

    def _odeint(self, func, y0, t, args, setup: SolveSetup, stats: SolveStats, **method_kwargs):
        if method_kwargs:
            raise InvalidInputError(f"{self.name}.odeint got unexpected keyword(s) {', '.join(sorted(method_kwargs))}")
        inputs = check_inputs(func, y0, t, args, control_dtype())
        counted = inputs.func if isinstance(stats, Uncounted) else _counted(inputs.func, stats)
        times = inputs.times.astype(inputs.layout.dtype)
        ys, failure = self._solve(counted, inputs.y0, times, inputs.args, setup, stats)
        self._raise_if_failed(failure, ys, inputs.times_list, setup)
        return ys

    def _raise_if_failed(self, failure, ys, times_list, setup: SolveSetup) -> None:
        """Eager calls raise odebench's errors; inside jit the values stay as the library returns them."""
        leaves = jax.tree_util.tree_leaves(ys)
        if failure is not None and not is_tracer(failure) and bool(failure):
            raise MaxStepsError(f"max_steps={setup.options['max_steps']} reached before t={times_list[-1]:g} "
                                f"({self.library})")
        if any(is_tracer(x) for x in leaves) or times_list is None:
            return
        for k, when in enumerate(times_list):
            if not all(bool(np.all(np.isfinite(np.asarray(x[k])))) for x in leaves):
                raise NonFiniteStateError(f"non-finite value (nan/inf) in the state at t={when:.10g}")

    def _solve(self, func, y0, times, args, setup: SolveSetup, stats: SolveStats):
        """The library's solve: (ys, a flag set when max_steps was reached, or None)."""
        raise NotImplementedError


def _counted(func, stats: SolveStats):
    def add():
        stats.nfe_forward += 1

    def counted(t, y, args):
        jax.debug.callback(add)
        return func(t, y, args)

    return counted


def _add_steps(stats: SolveStats, accepted, rejected) -> None:
    """diffrax's forward step counts (its backward solves, if any, report none we can read)."""
    stats.steps_accepted += int(accepted)
    stats.steps_rejected += int(rejected)


class DiffraxBackend(JaxPeer):
    """diffrax.diffeqsolve with BacksolveAdjoint, RecursiveCheckpointAdjoint or DirectAdjoint;
    a PIDController with odebench's tolerances and factors (a constant step for fixed-step
    solvers); outputs by SaveAt(ts=t), diffrax's dense output."""

    library = "diffrax"
    names = DIFFRAX

    def _solve(self, func, y0, times, args, setup: SolveSetup, stats: SolveStats):
        import diffrax

        o = setup.options
        adjoint = {"backsolve": diffrax.BacksolveAdjoint, "recursive-checkpoint": diffrax.RecursiveCheckpointAdjoint,
                   "direct": diffrax.DirectAdjoint}[self.method]()
        if setup.tableau.adaptive:
            controller = diffrax.PIDController(rtol=setup.rtol, atol=setup.atol, safety=o["safety"],
                                               factormin=o["dfactor"], factormax=o["ifactor"],
                                               step_ts=times if o["step_to_outputs"] else None)
            dt0 = o["first_step"]
        else:
            controller, dt0 = diffrax.ConstantStepSize(), o["step_size"] * jnp.sign(times[-1] - times[0])
        sol = diffrax.diffeqsolve(diffrax.ODETerm(func), getattr(diffrax, self.names[setup.tableau.name])(),
                                  times[0], times[-1], dt0, y0, args, saveat=diffrax.SaveAt(ts=times),
                                  stepsize_controller=controller, adjoint=adjoint, max_steps=o["max_steps"],
                                  throw=False)
        if not isinstance(stats, Uncounted):
            jax.debug.callback(functools.partial(_add_steps, stats), sol.stats["num_accepted_steps"],
                               sol.stats["num_rejected_steps"])
        return sol.ys, sol.result == diffrax.RESULTS.max_steps_reached


class JaxOdeBackend(JaxPeer):
    """jax.experimental.ode.odeint: its own dopri5 with dense output and its adjoint.  It takes
    rtol, atol and max_steps (its mxstep); it signals nothing when mxstep is reached."""

    library = "jax.experimental.ode"
    names = JAX_ODE

    def _solve(self, func, y0, times, args, setup: SolveSetup, stats: SolveStats):
        from jax.experimental.ode import odeint

        ys = odeint(lambda y, t, a: func(t, y, a), y0, times, args, rtol=setup.rtol, atol=setup.atol,
                    mxstep=setup.options["max_steps"])
        return ys, None


def build_backend(library: str, method: str, name: str):
    return {"diffrax": DiffraxBackend, "jaxode": JaxOdeBackend}[library](name, method)
