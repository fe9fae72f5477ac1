"""The checks of the conformance kit: one contract, run against any registered backend.

Each check returns CheckResults whose ``figure`` is the number that decided it.  The host
knows the contract (cases, thresholds, comparisons in numpy); the backend's framework supplies
an adapter (``Runtime.conformance()``) that builds the cases in its arrays, runs the backend
and counts evaluations independently in the dynamics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .cases import BAD_INPUTS, PROBLEMS, grad_case

ACCURACY_TOL, ACCURACY_BOUND = 1e-6, 20.0  # error <= 20 x (atol + rtol max|y|), 11 output times
FIXED_STEP, FIXED_BOUND = 0.01, 1e-7  # rk4 with step 0.01: the error of the method, h^4 scale
FD_STEP, FD_BOUND = 1e-6, 1e-5  # central differences against the backend's gradient (float64)
REFERENCE = {"float64": (1e-10, 1e-5), "float32": (1e-6, 1e-2)}  # dtype: (tol, relative bound)
MEMORY_TOLS, MEMORY_FLAT, NFE_GROWTH = (1e-3, 1e-8), 1.15, 1.5


@dataclass
class CheckResult:
    name: str
    status: str  # "pass", "fail" or "skip"
    figure: str

    def line(self) -> str:
        return f"{self.status.upper():4}  {self.name:<50} {self.figure}"


def _verdict(name: str, ok: bool, figure: str) -> CheckResult:
    return CheckResult(name, "pass" if ok else "fail", figure)


def _guarded(name: str, check: Callable[[], list]) -> list:
    """A check that raises fails with the exception as its figure (one line)."""
    try:
        return check()
    except Exception as exc:  # the contract is what is being tested: report, don't crash
        first = (str(exc).splitlines() or [""])[0]
        return [CheckResult(name, "fail", f"raised {type(exc).__name__}: {first[:160]}")]


def _rel(a: dict, b: dict) -> float:
    """max over entries of |a - b| / max |b| (per array)."""
    return max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(b[k]))), 1e-300)) for k in b)


def check_accuracy(adapter, backend, solvers) -> list:
    return [_accuracy(adapter, backend, solver) for solver in solvers]


def _accuracy(adapter, backend, solver: str) -> CheckResult:
    """11 outputs of A1, A3 and B4 against their closed forms: an adaptive solver within 20x
    its tolerance's scale, a fixed-step one (step 0.01) within 1e-7."""
    fixed = adapter.is_fixed_step(solver)
    worst = 0.0
    for problem in PROBLEMS:
        times = np.linspace(0.0, problem.t1, 11)
        ys, _, _ = adapter.solve(backend, problem, times, solver, ACCURACY_TOL, "float64",
                                 {"step_size": FIXED_STEP} if fixed else None)
        exact = np.stack([problem.exact(t) for t in times])
        error = float(np.abs(ys - exact).max())
        worst = max(worst, error if fixed else error / (ACCURACY_TOL * (1 + np.abs(exact).max())))
    if fixed:
        return _verdict(f"accuracy[{solver}]", worst <= FIXED_BOUND,
                        f"error {worst:.1e} (<= {FIXED_BOUND:g}; step {FIXED_STEP}) on A1, A3, B4")
    return _verdict(f"accuracy[{solver}]", worst <= ACCURACY_BOUND,
                    f"error / tolerance scale {worst:.2f} (<= {ACCURACY_BOUND:g}) on A1, A3, B4 at tol {ACCURACY_TOL:g}")


def _fd_setup(adapter, solvers):
    """rk4 with a fixed step where the backend runs it (the loss is then smooth), else the
    first adaptive solver at a tight tolerance."""
    if "rk4" in solvers:
        return "rk4", 1e-3, {"step_size": FIXED_STEP}
    return next(s for s in solvers if not adapter.is_fixed_step(s)), 1e-12, None


def check_gradients_fd(adapter, backend, solvers) -> list:
    solver, tol, options = _fd_setup(adapter, solvers)
    case = grad_case()
    _, grads, _, _ = adapter.gradients(backend, case, solver, tol, "float64", options)
    fd = {}
    for name, value in [("y0", case.y0)] + list(case.weights.items()):
        flat, est = value.reshape(-1), np.zeros(value.size)
        for i in range(flat.size):
            h = FD_STEP * max(1.0, abs(flat[i]))
            losses = []
            for sign in (1.0, -1.0):
                moved = flat.copy()
                moved[i] += sign * h
                moved = moved.reshape(value.shape)
                c = case.with_y0(moved) if name == "y0" else case.with_weights({**case.weights, name: moved})
                losses.append(adapter.loss(backend, c, solver, tol, "float64", options))
            est[i] = (losses[0] - losses[1]) / (2 * h)
        fd[name] = est.reshape(value.shape)
    err = _rel(grads, fd)
    return [_verdict("gradients vs finite differences", err <= FD_BOUND,
                     f"relative error {err:.1e} (<= {FD_BOUND:g}; {solver}, float64, y0 and 4 parameters)")]


def check_gradients_reference(adapter, backend, name: str) -> list:
    if name == adapter.reference:
        return [CheckResult(f"gradients vs {adapter.reference}", "skip", "it is the reference")]
    out = []
    reference = adapter.backend(adapter.reference)
    for dtype, (tol, bound) in REFERENCE.items():
        for label, case in (("4 output times", grad_case()), ("tuple state", grad_case(tuple_state=True))):
            _, got, _, _ = adapter.gradients(backend, case, "dopri5", tol, dtype)
            _, ref, _, _ = adapter.gradients(reference, case, "dopri5", tol, dtype)
            err = _rel(got, ref)
            out.append(_verdict(f"gradients vs {adapter.reference}[{dtype}, {label}]", err <= bound,
                                f"relative error {err:.1e} (<= {bound:g}; dopri5, tol {tol:g})"))
    return out


def check_nfe(adapter, backend) -> list:
    problem = PROBLEMS[1]
    _, stats, counted = adapter.solve(backend, problem, np.linspace(0.0, problem.t1, 5), "dopri5", 1e-6, "float64")
    out = [_verdict("NFE forward = evaluations counted", stats.nfe_forward == counted,
                    f"reported {stats.nfe_forward}, counted in the dynamics {counted}")]
    _, _, stats, (fwd, bwd) = adapter.gradients(backend, grad_case(), "dopri5", 1e-8, "float64")
    if bwd is None:
        out.append(CheckResult("NFE backward = evaluations counted", "skip", adapter.backward_count_note))
    else:
        out.append(_verdict("NFE backward = evaluations counted", (stats.nfe_forward, stats.nfe_backward) == (fwd, bwd),
                            f"reported {stats.nfe_forward} + {stats.nfe_backward}, counted {fwd} + {bwd}"))
    return out


def check_bad_inputs(adapter, backend) -> list:
    out = []
    for case, error, needles in BAD_INPUTS:
        try:
            adapter.bad_input(backend, case)
        except error as exc:
            text = str(exc)
            ok = all(n in text for n in needles) and "\n" not in text
            out.append(_verdict(f"bad input: {case}", ok, f"{type(exc).__name__}: {text[:100]}"))
        except Exception as exc:  # the wrong error is a failure of the contract
            out.append(_verdict(f"bad input: {case}", False,
                                f"{type(exc).__name__} instead of {error.__name__}: {str(exc)[:100]}"))
        else:
            out.append(_verdict(f"bad input: {case}", False, f"no error; expected {error.__name__}"))
    return out


def check_closures(adapter, backend) -> list:
    pair = adapter.closure_gradients(backend, grad_case(), "dopri5", 1e-9)
    if pair is None:
        return [CheckResult("gradients through a closure", "skip", adapter.closure_note)]
    via_closure, via_args = pair
    err = _rel(via_closure, via_args)
    return [_verdict("gradients through a closure", err <= 1e-8,
                     f"closure against args: relative difference {err:.1e} (<= 1e-08)")]


def check_memory(adapter, backend, method: str) -> list:
    if "adjoint" not in method:
        return [CheckResult("memory flat in NFE", "skip", f"method {method!r} makes no such claim")]
    figures = [adapter.memory(backend, grad_case(n_times=2, batch=64), tol) for tol in MEMORY_TOLS]
    if figures[0] is None:
        return [CheckResult("memory flat in NFE", "skip", adapter.memory_note)]
    (peak0, held0, nfe0), (peak1, held1, nfe1) = figures
    growth = nfe1 / max(nfe0, 1)
    ratios = (max(peak0, peak1) / max(min(peak0, peak1), 1), max(held0, held1) / max(min(held0, held1), 1))
    ok = growth >= NFE_GROWTH and max(ratios) <= MEMORY_FLAT
    return [_verdict("memory flat in NFE", ok, f"NFE x{growth:.1f} (tol {MEMORY_TOLS[0]:g} -> {MEMORY_TOLS[1]:g}): "
                     f"peak x{ratios[0]:.2f}, held x{ratios[1]:.2f} (<= {MEMORY_FLAT})")]
