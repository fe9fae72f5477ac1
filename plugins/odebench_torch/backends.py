"""The PyTorch gradient methods: backprop through the solver, the adjoint, the seminorm adjoint.

All three share one call, modelled on torchdiffeq:

    y = backend.odeint(func, y0, t, solver="dopri5", rtol=1e-7, atol=1e-9, options=None)

and one set of exact counters, ``backend.last_stats`` (a SolveStats): forward NFE and steps
are final when odeint returns; backward NFE and steps of the adjoint once backward has run.
Pass ``stats=`` to accumulate several calls into one SolveStats.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from odebench.errors import InvalidInputError
from odebench.solve import WARM, GradientBackend, SolveSetup, adjoint_norm_slices
from odebench.specs import SolveStats

from .integrate import RMSNorm, StepCounts, integrate
from .state import FlatState, check_finite, times_of, wrap_function


class _Solve:
    """Everything fixed for one odeint call: the setup, the flat function, times and counters."""

    def __init__(self, setup: SolveSetup, func, y0, t, stats: SolveStats):
        self.setup = setup
        self.times = times_of(t)
        self.state = FlatState(y0)
        self.stats = stats
        self.nfe = [0]
        self.func = func
        self.f = wrap_function(func, self.state, self.nfe)
        self.norm = RMSNorm(self.state.slices)
        self.next_step = 0.0

    def forward(self, y0_flat: torch.Tensor) -> torch.Tensor:
        check_finite(y0_flat)
        counts = StepCounts()
        s = self.setup
        try:
            ys = integrate(self.f, y0_flat, self.times, s.tableau, s.rtol, s.atol, s.options, self.norm, counts)
            self.next_step = counts.next_step
        finally:
            self.stats.nfe_forward += self.nfe[0]
            self.stats.steps_accepted += counts.accepted
            self.stats.steps_rejected += counts.rejected
            self.nfe[0] = 0
        return torch.stack(ys)


class TorchBackend(GradientBackend):
    """Base: the shared call (solver lookup and the checks are odebench.solve's)."""

    framework = "torch"

    def _odeint(self, func, y0, t, args, setup: SolveSetup, stats: SolveStats, **method_kwargs):
        if args is not None:
            raise InvalidInputError(f"{self.name} calls func(t, y): pass parameters inside func (an nn.Module "
                                    f"or a closure), not as args")
        solve = _Solve(setup, func, y0, t, stats)
        y0_flat = solve.state.flatten(solve.state.parts)
        ys = self._run(solve, y0_flat, **method_kwargs)
        return solve.state.unflatten_trajectory(ys)

    def _run(self, solve: _Solve, y0_flat: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError


class BackpropBackend(TorchBackend):
    """Reverse mode through the solver's operations: exact gradient of the discretisation.

    Memory grows with the number of function evaluations (every stage's activations are kept).
    Step-size control runs without grad, so accepted steps are fixed in the backward pass.
    """

    method = "backprop"

    def _run(self, solve: _Solve, y0_flat: torch.Tensor) -> torch.Tensor:
        return solve.forward(y0_flat)


class AdjointBackend(TorchBackend):
    """Chen et al. (2018) adjoint: solve [y, a, dL/dθ] backwards between consecutive output times.

    The forward solve runs without grad and keeps only y at the output times, so the memory
    held for backward does not grow with NFE.  Gradients flow to y0 and to ``adjoint_params``
    (default: the parameters of ``func`` if it is an nn.Module).  ``seminorm=True`` drops the
    parameter-cotangent channel from the backward error norm (Kidger, Chen & Lyons 2021).
    ``adjoint_rtol`` / ``adjoint_atol`` default to the forward ones, ``adjoint_options`` to the
    forward options with the first step of each backward segment "warm" (the step the
    controller proposed last); ``adjoint_options={"first_step": None}`` restarts the automatic
    first step on every segment, as torchdiffeq does (see ``odebench.solve.options``).
    Gradients with respect to t are not computed.
    """

    method = "adjoint"

    def __init__(self, name: str, seminorm: bool = False) -> None:
        super().__init__(name)
        self.seminorm = seminorm

    def _run(
        self,
        solve: _Solve,
        y0_flat: torch.Tensor,
        adjoint_rtol: Optional[float] = None,
        adjoint_atol: Optional[float] = None,
        adjoint_options: Optional[dict] = None,
        adjoint_params: Optional[Sequence[torch.Tensor]] = None,
    ) -> torch.Tensor:
        if adjoint_params is None:
            adjoint_params = tuple(solve.func.parameters()) if isinstance(solve.func, torch.nn.Module) else ()
        params = tuple(p for p in adjoint_params if p.requires_grad)
        solve.adjoint = solve.setup.adjoint(adjoint_rtol, adjoint_atol, adjoint_options)
        solve.params = params
        solve.seminorm = self.seminorm
        return _AdjointFunction.apply(solve, y0_flat, *params)


class _AdjointFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, solve: _Solve, y0_flat: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ys = solve.forward(y0_flat)
        ctx.solve = solve
        ctx.save_for_backward(ys)
        return ys

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ys: torch.Tensor):
        solve: _Solve = ctx.solve
        (ys,) = ctx.saved_tensors
        params = solve.params
        shape = ys.shape[1:]
        n = shape.numel()
        n_params = sum(p.numel() for p in params)
        f = solve.f
        nfe = [0]

        def augmented(t: float, s: torch.Tensor) -> torch.Tensor:
            nfe[0] += 1
            y = s[:n].view(shape)
            a = s[n : 2 * n].view(shape)
            with torch.enable_grad():
                y_ = y.detach().requires_grad_(True)
                dy = f(t, y_)
                grads = torch.autograd.grad(dy, (y_, *params), -a, allow_unused=True)
            parts = [dy.detach().reshape(-1)]
            parts += [(torch.zeros_like(x) if g is None else g).reshape(-1) for g, x in zip(grads, (y_, *params))]
            return torch.cat(parts)

        norm = RMSNorm(adjoint_norm_slices(n, [p.numel() for p in params], solve.seminorm))
        counts = StepCounts()
        times = solve.times
        a = grad_ys[-1].reshape(-1)
        g = torch.zeros(n_params, dtype=ys.dtype, device=ys.device)
        nfe_before = solve.nfe[0]
        adj = solve.adjoint
        options = dict(adj.options)
        warm = options.get("first_step") == WARM
        counts.next_step = solve.next_step  # the forward controller's last proposal
        try:
            with torch.no_grad():
                for i in range(len(times) - 1, 0, -1):
                    if warm:  # continue the controller: the step it proposed last
                        options["first_step"] = counts.next_step
                    s0 = torch.cat([ys[i].reshape(-1), a, g])
                    s1 = integrate(
                        augmented, s0, [times[i], times[i - 1]], adj.tableau, adj.rtol, adj.atol, options, norm, counts,
                    )[-1]
                    a = s1[n : 2 * n] + grad_ys[i - 1].reshape(-1)
                    g = s1[2 * n :]
        finally:
            solve.stats.nfe_backward += nfe[0]
            solve.stats.steps_accepted_backward += counts.accepted
            solve.stats.steps_rejected_backward += counts.rejected
            solve.nfe[0] = nfe_before  # the inner f counted forward calls; they are backward ones
        grad_y0 = a.view(shape) if ctx.needs_input_grad[1] else None
        grad_params = []
        offset = 0
        for p in params:
            grad_params.append(g[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        return (None, grad_y0, *grad_params)


def build_backend(method: str, name: str) -> TorchBackend:
    """The backend of one gradient method (see the plugin's registration)."""
    if method == "backprop":
        return BackpropBackend(name)
    return AdjointBackend(name, seminorm=(method == "adjoint-seminorm"))
