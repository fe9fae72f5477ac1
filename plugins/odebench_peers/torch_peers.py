"""torchdiffeq and torchode as odebench backends: odebench's front door and counters around
the library's own solve.

Every call goes through odebench's checks (solver, tolerances, options, times, y0, the first
output of func), so a peer gives the errors odebench promises; the library then solves with
its own loop.  Evaluations are counted at the dynamics, forward while the library solves and
backward while autograd runs (a marker in the graph, upstream of the solve, closes the count
when the backward pass is done).
"""

from __future__ import annotations


import torch

from odebench.errors import InvalidInputError, MaxStepsError, NonFiniteStateError
from odebench.solve import GradientBackend, SolveSetup, check_outputs
from odebench.specs import SolveStats
from odebench_torch import FlatState, check_finite, times_of

from .solvers import TORCHDIFFEQ, TORCHODE


class Counted(torch.nn.Module):
    """The user's func, counting its calls and checking its first output like odebench's own
    backends; an nn.Module holding func, so an adjoint finds func's parameters through it."""

    def __init__(self, func, state: FlatState) -> None:
        super().__init__()
        self.func, self.state, self.calls, self.checked = func, state, 0, False

    def forward(self, t, y):
        self.calls += 1
        out = self.func(t, y)
        if not self.checked:
            check_outputs(out, self.state.shapes, self.state.dtype, self.state.is_tuple,
                          lambda o: isinstance(o, torch.Tensor))
            self.checked = True
        return out


class OneRow(torch.nn.Module):
    """The state flattened into one row [1, n] (torchode solves rows), func seeing its own
    layout.  torchode's BacksolveAdjoint maps it over rows (torch.func.vmap): y is then [n]."""

    def __init__(self, counted: Counted) -> None:
        super().__init__()
        self.counted = counted

    def forward(self, t, y):
        state, batched = self.counted.state, y.ndim == 2
        flat = y[0] if batched else y
        parts = state.unflatten(flat) if state.is_tuple else (flat.view(state.shapes[0]),)
        out = self.counted(t[0] if t.ndim == 1 else t, parts if state.is_tuple else parts[0])
        out = state.flatten(out) if state.is_tuple else out.reshape(-1)
        return out[None] if batched else out


class _CloseBackwardCount(torch.autograd.Function):
    """Identity on y0; its backward runs after the solve's (it is upstream of it) and records the
    backward evaluations.  The anchor (a leaf that requires grad) keeps it in every graph."""

    @staticmethod
    def forward(ctx, record, anchor, y0):
        ctx.record = record
        return y0.clone()

    @staticmethod
    def backward(ctx, grad):
        ctx.record()
        return None, None, grad


class TorchPeer(GradientBackend):
    """A torch library behind odebench's call; subclasses implement ``_solve``."""

    framework = "torch"
    library = ""
    names: dict = {}

    def __init__(self, name: str, method: str) -> None:
        super().__init__(name)
        self.method = method
        self.supported_solvers = tuple(self.names)

    def setup(self, solver, rtol, atol, options) -> SolveSetup:
        name = getattr(solver, "name", solver)
        setup = super().setup(solver, rtol, atol, options)  # unknown names: odebench's own error first
        if name not in self.names:
            raise InvalidInputError(f"{self.name} does not run solver {name!r}; it runs: {', '.join(self.names)}")
        return setup

    def _odeint(self, func, y0, t, args, setup: SolveSetup, stats: SolveStats, **method_kwargs):
        if args is not None:
            raise InvalidInputError(f"{self.name} calls func(t, y): pass parameters inside func, not as args")
        state, times = FlatState(y0), times_of(t)
        for part in state.parts:
            check_finite(part)
        counted, steps = Counted(func, state), {}
        start, done = self._mark(y0, counted, stats, steps)
        t_tensor = torch.tensor(times, dtype=state.dtype, device=state.device)
        try:
            ys = self._solve(counted, start, t_tensor, setup, steps, **method_kwargs)
        except AssertionError as exc:  # the library's own checks
            raise _translate(exc, setup, times, self.library) from None
        finally:
            done[0] = counted.calls
            stats.nfe_forward += counted.calls
        if "forward" in steps:
            accepted, rejected = steps["forward"]
            stats.steps_accepted += accepted
            stats.steps_rejected += rejected
        _check_finite_outputs(ys, times)
        return ys

    @staticmethod
    def _mark(y0, counted: Counted, stats: SolveStats, steps: dict):
        """y0 through the marker that adds the backward evaluations (and the backward steps, where
        the library fills ``steps["backward"]``) to stats once autograd is done."""
        done = [0]
        if not torch.is_grad_enabled():
            return y0, done

        def record():
            stats.nfe_backward += counted.calls - done[0]
            if "backward" in steps:
                accepted, rejected = steps["backward"]()
                stats.steps_accepted_backward += accepted
                stats.steps_rejected_backward += rejected

        anchor = torch.zeros((), requires_grad=True)
        if isinstance(y0, (tuple, list)):
            return (_CloseBackwardCount.apply(record, anchor, y0[0]),) + tuple(y0[1:]), done
        return _CloseBackwardCount.apply(record, anchor, y0), done

    def _solve(self, func: Counted, y0, t: torch.Tensor, setup: SolveSetup, steps: dict, **method_kwargs):
        """The library's solve; where it counts steps it sets ``steps["forward"]`` to (accepted,
        rejected) and ``steps["backward"]`` to a callable giving them after the backward pass."""
        raise NotImplementedError


def _translate(exc: AssertionError, setup: SolveSetup, times, library: str):
    """A library's assertion as the odebench error it stands for."""
    text = str(exc)
    if "max_num_steps" in text:
        return MaxStepsError(f"max_steps={setup.options['max_steps']} reached before t={times[-1]:g} ({library}: {text})")
    if "non-finite" in text or "nan" in text or "underflow" in text:
        return NonFiniteStateError(f"non-finite value (nan/inf) in the state at t=? ({library}: {text[:120]})")
    return exc


def _check_finite_outputs(ys, times) -> None:
    parts = ys if isinstance(ys, tuple) else (ys,)
    with torch.no_grad():
        for k, when in enumerate(times):
            if not all(bool(torch.isfinite(p[k]).all()) for p in parts):
                raise NonFiniteStateError(f"non-finite value (nan/inf) in the state at t={when:.10g}")


class TorchdiffeqBackend(TorchPeer):
    """torchdiffeq's odeint (backprop) or odeint_adjoint (adjoint, seminorm adjoint)."""

    library = "torchdiffeq"
    names = TORCHDIFFEQ

    def _solve(self, func, y0, t, setup: SolveSetup, steps: dict, adjoint_rtol=None, adjoint_atol=None, adjoint_options=None,
               adjoint_params=None):
        import torchdiffeq

        kwargs = dict(method=self.names[setup.tableau.name], rtol=setup.rtol, atol=setup.atol,
                      options=_torchdiffeq_options(setup, t))
        if self.method == "backprop":
            return torchdiffeq.odeint(func, y0, t, **kwargs)
        # torchdiffeq copies the forward options to the backward solve only when given none:
        # merge, so a seminorm (or any adjoint option) keeps the step size and step control
        adjoint = {**kwargs["options"], **(adjoint_options or {})}
        if self.method == "adjoint-seminorm":
            adjoint["norm"] = "seminorm"
        return torchdiffeq.odeint_adjoint(func, y0, t, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                                          adjoint_options=adjoint or None, adjoint_params=adjoint_params, **kwargs)


def _torchdiffeq_options(setup: SolveSetup, t: torch.Tensor) -> dict:
    o = setup.options
    if not setup.tableau.adaptive:
        return {"step_size": o["step_size"]}
    out = {"safety": o["safety"], "ifactor": o["ifactor"], "dfactor": o["dfactor"], "max_num_steps": o["max_steps"]}
    if o["first_step"] is not None:
        out["first_step"] = o["first_step"]
    if o["step_to_outputs"]:
        out["step_t"] = t
    return out


class TorchodeBackend(TorchPeer):
    """torchode: AutoDiffAdjoint (backprop through its loop) or BacksolveAdjoint.  torchode
    solves a batch of independent problems; odebench's state is one problem, a batch of one
    row holding the flattened state, so the step control is joint as in the other backends."""

    library = "torchode"
    names = TORCHODE

    def _solve(self, func, y0, t, setup: SolveSetup, steps: dict):
        import torchode as to

        state = func.state
        row = state.flatten(y0) if state.is_tuple else y0.reshape(-1)
        term = to.ODETerm(OneRow(func))
        step = getattr(to, self.names[setup.tableau.name])(term=term)
        o = setup.options
        controller = to.IntegralController(atol=setup.atol, rtol=setup.rtol, term=term, safety=o["safety"],
                                           factor_min=o["dfactor"], factor_max=o["ifactor"])
        if self.method == "backprop":
            solver = to.AutoDiffAdjoint(step, controller, max_steps=o["max_steps"])
        else:
            solver = to.BacksolveAdjoint(term, step, controller)
        problem = to.InitialValueProblem(y0=row[None], t_eval=t[None])
        dt0 = None if o["first_step"] is None else torch.tensor([o["first_step"]], dtype=t.dtype)
        sol = solver.solve(problem, dt0=dt0)
        status = int(sol.status[0])
        if status != 0:  # torchode.status_codes: 2 dt below its minimum, 3 max steps, 4 an infinite norm
            raise AssertionError({3: "max_num_steps exceeded", 2: "underflow in dt"}.get(status, "non-finite norm")
                                 + f" (torchode status {status})")
        steps["forward"] = _accepted_rejected(sol.stats)
        # BacksolveAdjoint appends the stats of its backward solves to the same dict
        steps["backward"] = lambda: _backsolve_steps(sol.stats)
        ys = sol.ys[0]
        return state.unflatten_trajectory(ys) if state.is_tuple else ys.reshape((len(t),) + tuple(state.shapes[0]))


def _accepted_rejected(stats: dict) -> tuple:
    accepted = int(stats["n_accepted"][0])
    return accepted, int(stats["n_steps"][0]) - accepted


def _backsolve_steps(stats: dict) -> tuple:
    runs = [_accepted_rejected(s) for s in stats.get("backsolve", [])]
    return sum(a for a, _ in runs), sum(r for _, r in runs)


def build_backend(library: str, method: str, name: str):
    return {"torchdiffeq": TorchdiffeqBackend, "torchode": TorchodeBackend}[library](name, method)
