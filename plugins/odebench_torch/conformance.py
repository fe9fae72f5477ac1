"""The conformance kit's adapter for torch backends (odebench.testing): the kit's cases in
torch tensors, with evaluations counted independently in the dynamics.  Peers of the torch
framework (torchdiffeq, torchode) are checked through it too."""

from __future__ import annotations

import math

import numpy as np
import torch

from odebench.specs import SolveStats

from .memory import PeakAllocated, held_for_backward

DTYPES = {"float32": torch.float32, "float64": torch.float64}
T01 = torch.tensor([0.0, 1.0], dtype=torch.float64)


def _b4(t, y):
    y1, y2, y3 = y[0], y[1], y[2]
    r = torch.sqrt(y1 * y1 + y2 * y2)
    return torch.stack([-y2 - y1 * y3 / r, y1 - y2 * y3 / r, y1 / r])


RHS = {"A1": lambda t, y: -y, "A3": lambda t, y: y * torch.cos(t), "B4": _b4}


class CountedMLP(torch.nn.Module):
    """The kit's f(t, y) = W2 tanh(W1 [y, t] + b1) + b2, counting its calls."""

    def __init__(self, weights: dict, dtype) -> None:
        super().__init__()
        for k, v in weights.items():
            setattr(self, k, torch.nn.Parameter(torch.tensor(v, dtype=dtype)))
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        tt = t.to(y.dtype).expand(*y.shape[:-1], 1)
        return torch.tanh(torch.cat([y, tt], dim=-1) @ self.W1.T + self.b1) @ self.W2.T + self.b2


class PairState(torch.nn.Module):
    """(y, l) with l' = -sum(f * y) per row: a tuple state through the same MLP."""

    def __init__(self, mlp: CountedMLP) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, t, state):
        y, _ = state
        dy = self.mlp(t, y)
        return dy, -(dy * y).sum(-1, keepdim=True)


class TorchConformance:
    framework = "torch"
    reference = "torch-backprop"
    closure_note = "torch passes parameters inside func (an nn.Module or a closure): nothing to convert"
    memory_note = ""
    backward_count_note = ""

    def __init__(self, registry) -> None:
        self.registry = registry

    def backend(self, name: str):
        return self.registry.backend(name)

    def supports(self, backend, solver: str) -> bool:
        supported = getattr(backend, "supported_solvers", None)
        return solver in (supported if supported is not None else self.registry.names("solver"))

    def is_fixed_step(self, solver: str) -> bool:
        return not self.registry.solver(solver).adaptive

    def solve(self, backend, problem, times, solver, tol, dtype, options=None):
        calls = [0]
        rhs = RHS[problem.name]

        def f(t, y):
            calls[0] += 1
            return rhs(t, y)

        stats = SolveStats()
        with torch.no_grad():
            ys = backend.odeint(f, torch.tensor(problem.y0, dtype=DTYPES[dtype]),
                                torch.tensor(times, dtype=DTYPES[dtype]), solver=solver, rtol=tol, atol=tol,
                                options=options, stats=stats)
        return ys.numpy(), stats, calls[0]

    def _forward(self, backend, case, solver, tol, dtype, options, stats):
        dt = DTYPES[dtype]
        mlp = CountedMLP(case.weights, dt)
        y0 = torch.tensor(case.y0, dtype=dt, requires_grad=True)
        times = torch.tensor(case.times, dtype=dt)
        w = torch.tensor(case.loss_weights, dtype=dt)
        if case.tuple_state:
            ys, ls = backend.odeint(PairState(mlp), (y0, torch.zeros(y0.shape[0], 1, dtype=dt)), times, solver=solver,
                                    rtol=tol, atol=tol, options=options, stats=stats)
            loss = (ys * w).sum() + (ls * torch.tensor(case.l_weights, dtype=dt)).sum()
        else:
            ys = backend.odeint(mlp, y0, times, solver=solver, rtol=tol, atol=tol, options=options, stats=stats)
            loss = (ys * w).sum()
        return loss, mlp, y0

    def gradients(self, backend, case, solver, tol, dtype, options=None):
        stats = SolveStats()
        loss, mlp, y0 = self._forward(backend, case, solver, tol, dtype, options, stats)
        forward = mlp.calls
        loss.backward()
        grads = {"y0": y0.grad.double().numpy()}
        grads.update({k: getattr(mlp, k).grad.double().numpy() for k in case.weights})
        return float(loss.detach()), grads, stats, (forward, mlp.calls - forward)

    def loss(self, backend, case, solver, tol, dtype, options=None) -> float:
        with torch.no_grad():
            return float(self._forward(backend, case, solver, tol, dtype, options, SolveStats())[0])

    def memory(self, backend, case, tol):
        """(peak, held, forward NFE) of one forward and backward."""
        stats = SolveStats()
        with PeakAllocated("cpu") as peak:
            loss, _, _ = self._forward(backend, case, "dopri5", tol, "float64", None, stats)
            held = held_for_backward(loss)
            loss.backward()
        return peak.bytes, held, stats.nfe_forward

    def closure_gradients(self, backend, case, solver, tol):
        return None

    def bad_input(self, backend, case: str) -> None:
        one = torch.ones(2, dtype=torch.float64)
        calls = {
            "unknown solver": lambda: backend.odeint(RHS["A1"], one, T01, solver="rk45"),
            "rtol = 0": lambda: backend.odeint(RHS["A1"], one, T01, rtol=0.0, atol=1e-3),
            "rtol < 0": lambda: backend.odeint(RHS["A1"], one, T01, rtol=-1e-3, atol=1e-3),
            "rtol not a number": lambda: backend.odeint(RHS["A1"], one, T01, rtol="abc", atol=1e-3),
            "atol = nan": lambda: backend.odeint(RHS["A1"], one, T01, rtol=1e-3, atol=math.nan),
            "atol = inf": lambda: backend.odeint(RHS["A1"], one, T01, rtol=1e-3, atol=math.inf),
            "repeated time": lambda: backend.odeint(RHS["A1"], one, torch.tensor([0.0, 1.0, 1.0])),
            "time not monotonic": lambda: backend.odeint(RHS["A1"], one, torch.tensor([0.0, 2.0, 1.0])),
            "nan time": lambda: backend.odeint(RHS["A1"], one, torch.tensor([0.0, math.nan])),
            "output shape": lambda: backend.odeint(lambda t, y: torch.zeros(3, dtype=y.dtype), one, T01),
            "output dtype": lambda: backend.odeint(lambda t, y: -y.float(), one, T01),
            "tuple length": lambda: backend.odeint(lambda t, s: (s[0],), (one, one[:1]), T01),
            "integer y0": lambda: backend.odeint(RHS["A1"], torch.ones(2, dtype=torch.int64), T01),
            "unknown option": lambda: backend.odeint(RHS["A1"], one, T01, solver="rk4", options={"step_szie": 0.1}),
            "fixed step without step_size": lambda: backend.odeint(RHS["A1"], one, T01, solver="rk4"),
            "max_steps = 0": lambda: backend.odeint(RHS["A1"], one, T01, options={"max_steps": 0}),
            "nan in y0": lambda: backend.odeint(RHS["A1"], torch.tensor([1.0, np.nan], dtype=torch.float64), T01),
            "nan appearing in the state": lambda: backend.odeint(
                lambda t, y: torch.where(t > 0.5, torch.full_like(y, math.nan), -y), one, T01),
            "max_steps reached": lambda: backend.odeint(lambda t, y: torch.cos(20 * t) * y, one[:1],
                                                        torch.tensor([0.0, 10.0], dtype=torch.float64), rtol=1e-10,
                                                        atol=1e-10, options={"max_steps": 20}),
        }
        with torch.no_grad():
            calls[case]()
