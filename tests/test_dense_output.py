"""Dense output: values between step ends come from the tableau's interpolant, so the number of
output times costs no evaluations, in torch and JAX alike; ``step_to_outputs=True`` keeps the
old behaviour (every output time a step end).  Checked against closed forms, against scipy,
between frameworks, and for gradients through the interpolant."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_integrate = pytest.importorskip("scipy.integrate")

import odebench  # noqa: E402

from .problems import A1, A2, A3, B4, D1  # noqa: E402
from .problems import TorchMLP, mlp_weights  # noqa: E402

F64 = torch.float64
TB = odebench.backend("torch-backprop")


def _torch(problem, solver, n, tol, t1=None, **options):
    t = np.linspace(0.0, problem.t1 if t1 is None else t1, n)
    ys = TB.odeint(problem.f_torch, problem.y0_tensor(F64), torch.tensor(t), solver=solver, rtol=tol, atol=tol,
                   options=options or None)
    exact = np.stack([problem.exact(x) for x in t])
    return ys.detach().numpy(), exact, TB.last_stats


@pytest.mark.parametrize("solver", ["dopri5", "tsit5", "bosh3", "adaptive_heun"])
def test_many_outputs_cost_no_evaluations(solver):
    """The issue's case: DETEST A3 over [0, 20] at 1e-6.  Stepping onto 201 output times cost
    1,208 evaluations against 482 for 2 (dopri5); interpolating, 201 cost what 2 cost."""
    tol = 1e-6 if solver != "adaptive_heun" else 1e-4
    _, _, two = _torch(A3, solver, 2, tol, t1=20.0)
    _, _, many = _torch(A3, solver, 201, tol, t1=20.0)
    _, _, stepped = _torch(A3, solver, 201, tol, t1=20.0, step_to_outputs=True)
    assert many.nfe_forward <= 1.3 * two.nfe_forward and many.steps_accepted == two.steps_accepted
    assert stepped.nfe_forward > 1.3 * two.nfe_forward or solver in ("bosh3", "adaptive_heun")  # short steps
    assert stepped.steps_accepted > two.steps_accepted
    if solver == "dopri5":
        assert (two.nfe_forward, many.nfe_forward, stepped.nfe_forward) == (482, 482, 1208)


@pytest.mark.parametrize("tol", [1e-4, 1e-6, 1e-8])
@pytest.mark.parametrize("problem", [A1, A2, A3, B4], ids=lambda p: p.name)
@pytest.mark.parametrize("solver", ["dopri5", "tsit5", "bosh3"])
def test_interpolated_values_within_the_tolerance_scale(solver, problem, tol):
    """201 interpolated outputs against the closed form: within 20 x (atol + rtol max|y|); the
    worst measured is 11 (bosh3's cubic Hermite on A3 at 1e-8, where stepping onto every output
    gives 9.6)."""
    ys, exact, _ = _torch(problem, solver, 201, tol)
    scale = tol + tol * np.abs(exact).max()
    assert np.abs(ys - exact).max() <= 20 * scale


def test_eighth_order_methods_step_onto_outputs_by_default():
    """A cubic Hermite between the long steps of DOP853 would cost it four orders of magnitude
    (A3 at 1e-6, 201 outputs: 7e-3 against 3e-7): it steps onto outputs unless told not to."""
    ys, exact, stepped = _torch(A3, "dopri8", 201, 1e-6, t1=20.0)
    hermite, _, interp = _torch(A3, "dopri8", 201, 1e-6, t1=20.0, step_to_outputs=False)
    assert odebench.solver("dopri8").interpolant_order == 3 and not odebench.solver("dopri8").interpolates_by_default
    assert np.abs(ys - exact).max() < 1e-7 < np.abs(hermite - exact).max()
    assert interp.nfe_forward < stepped.nfe_forward


@pytest.mark.parametrize("step_to_outputs", [False, True])
@pytest.mark.parametrize("problem", [A1, A3, B4, D1], ids=lambda p: p.name)
def test_dopri5_against_scipy_at_many_outputs(problem, step_to_outputs):
    """scipy's RK45 with t_eval (its own dense output) against odebench in both modes: the
    error over 21 output times within 3x; interpolating, at most 1.5x scipy's evaluations."""
    t = np.linspace(0.0, problem.t1, 21)
    for tol in (1e-4, 1e-7):
        ys, exact, stats = _torch(problem, "dopri5", 21, tol, step_to_outputs=step_to_outputs)
        sol = scipy_integrate.solve_ivp(problem.f_numpy, (0.0, problem.t1), np.array(problem.y0, dtype=float),
                                        method="RK45", rtol=tol, atol=tol, t_eval=t)
        err, err_ref = np.abs(ys - exact).max(), np.abs(sol.y.T - exact).max()
        assert err <= 3 * err_ref, (tol, err, err_ref)
        if not step_to_outputs:
            assert stats.nfe_forward <= 1.5 * sol.nfev, (tol, stats.nfe_forward, sol.nfev)


W = mlp_weights()
Y0 = np.random.default_rng(1).normal(size=(4, 3))
T50 = np.linspace(0.0, 2.0, 50)
LOSS_WEIGHTS = np.random.default_rng(7).normal(size=(50, 4, 3))


def _torch_grads(name, solver, tol):
    func = TorchMLP(W)
    y0 = torch.tensor(Y0, requires_grad=True)
    backend = odebench.backend(name)
    ys = backend.odeint(func, y0, torch.tensor(T50), solver=solver, rtol=tol, atol=tol)
    (ys * torch.tensor(LOSS_WEIGHTS)).sum().backward()
    return [y0.grad.numpy()] + [getattr(func, k).grad.numpy() for k in W], backend.last_stats


def _rel(a, b) -> float:
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y))) for x, y in zip(a, b))


@pytest.mark.parametrize("solver", ["dopri5", "tsit5"])
def test_adjoint_equals_backprop_with_50_output_times(solver):
    """The adjoint integrates backwards between consecutive (interpolated) outputs; float64,
    tol 1e-10: the gradients of y0 and every parameter within 1e-6 of backprop's."""
    ref, _ = _torch_grads("torch-backprop", solver, 1e-10)
    grads, stats = _torch_grads("torch-adjoint", solver, 1e-10)
    assert _rel(grads, ref) <= 1e-6
    assert stats.nfe_backward > 0
