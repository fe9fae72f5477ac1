"""Bad input to a torch backend gets a clear odebench error, never a bare traceback from deep inside.

The errors every backend promises are the conformance kit's (odebench.testing.cases.BAD_INPUTS,
run for every built-in backend in tests/test_conformance.py); these are torch's extras."""

import math

import pytest

torch = pytest.importorskip("torch")

import odebench  # noqa: E402
from odebench.errors import NonFiniteStateError, OdebenchError  # noqa: E402

BACKENDS = ("torch-backprop", "torch-adjoint", "torch-adjoint-seminorm")
T = torch.tensor([0.0, 1.0])


def decay(t, y):
    return -y


@pytest.fixture(params=BACKENDS)
def backend(request):
    return odebench.backend(request.param)


def test_decreasing_times_are_allowed(backend):
    y = backend.odeint(decay, torch.ones(1, dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64),
                       rtol=1e-9, atol=1e-9)
    assert abs(y[-1].item() - math.e) < 1e-7


@pytest.mark.parametrize("solver,options", [("dopri5", None), ("rk4", {"step_size": 0.1})])
def test_nan_appearing_in_state(backend, solver, options):
    def blows_up(t, y):
        return torch.where(t > 0.5, torch.full_like(y, float("nan")), -y)

    with pytest.raises(NonFiniteStateError, match="non-finite value") as exc:
        backend.odeint(blows_up, torch.ones(2), T, solver=solver, options=options)
    assert "t=" in str(exc.value)


def test_finite_time_blow_up_is_reported(backend):
    # y' = y^2, y(0) = 1 blows up at t = 1
    with pytest.raises(OdebenchError, match=r"at t=(0\.9999|1\.0000)"):
        backend.odeint(lambda t, y: y * y, torch.ones(1, dtype=torch.float64),
                       torch.tensor([0.0, 2.0], dtype=torch.float64), rtol=1e-6, atol=1e-6,
                       options={"max_steps": 100_000})


def test_errors_are_value_errors_for_callers_that_catch_builtins(backend):
    with pytest.raises(ValueError):
        backend.odeint(decay, torch.ones(2), T, rtol=-1.0)
