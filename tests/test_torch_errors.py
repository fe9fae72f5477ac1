"""Bad input to a torch backend gets a clear odebench error, never a bare traceback from deep inside."""

import math

import pytest

torch = pytest.importorskip("torch")

import odebench  # noqa: E402
from odebench.errors import (  # noqa: E402
    InvalidInputError,
    MaxStepsError,
    NonFiniteStateError,
    OdebenchError,
    UnknownNameError,
)

BACKENDS = ("torch-backprop", "torch-adjoint", "torch-adjoint-seminorm")
T = torch.tensor([0.0, 1.0])


def decay(t, y):
    return -y


@pytest.fixture(params=BACKENDS)
def backend(request):
    return odebench.backend(request.param)


def test_unknown_solver_lists_known(backend):
    with pytest.raises(UnknownNameError) as exc:
        backend.odeint(decay, torch.ones(2), T, solver="rk45")
    msg = str(exc.value)
    assert "unknown solver 'rk45'" in msg and "dopri5" in msg and "tsit5" in msg


@pytest.mark.parametrize("key,value", [("rtol", 0.0), ("rtol", -1e-3), ("atol", float("nan")),
                                       ("atol", float("inf")), ("rtol", "abc")])
def test_bad_tolerance(backend, key, value):
    kwargs = {"rtol": 1e-3, "atol": 1e-3, key: value}
    with pytest.raises(InvalidInputError, match=f"{key} must be a positive finite number"):
        backend.odeint(decay, torch.ones(2), T, **kwargs)


@pytest.mark.parametrize("t", [[0.0, 1.0, 1.0], [0.0, 2.0, 1.0], [1.0, 0.0, 0.5], [0.0, float("nan")]])
def test_times_not_strictly_monotonic(backend, t):
    with pytest.raises(InvalidInputError, match="t must"):
        backend.odeint(decay, torch.ones(2), torch.tensor(t))


def test_decreasing_times_are_allowed(backend):
    y = backend.odeint(decay, torch.ones(1, dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64),
                       rtol=1e-9, atol=1e-9)
    assert abs(y[-1].item() - math.e) < 1e-7


def test_wrong_output_shape(backend):
    with pytest.raises(InvalidInputError, match=r"shape \(3,\).*expected y0's shape \(2,\)"):
        backend.odeint(lambda t, y: torch.zeros(3), torch.ones(2), T)


def test_wrong_output_dtype(backend):
    with pytest.raises(InvalidInputError, match="dtype torch.float64.*torch.float32"):
        backend.odeint(lambda t, y: -y.double(), torch.ones(2), T)


def test_wrong_tuple_output(backend):
    with pytest.raises(InvalidInputError, match="returned 1 tensors, y0 has 2"):
        backend.odeint(lambda t, s: (s[0],), (torch.ones(2), torch.ones(1)), T)


def test_integer_state_rejected(backend):
    with pytest.raises(InvalidInputError, match="floating dtype"):
        backend.odeint(decay, torch.ones(2, dtype=torch.int64), T)


def test_nan_in_initial_state(backend):
    with pytest.raises(NonFiniteStateError, match="y0"):
        backend.odeint(decay, torch.tensor([1.0, float("nan")]), T)


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


def test_max_steps_says_where_it_stopped(backend):
    with pytest.raises(MaxStepsError) as exc:
        backend.odeint(lambda t, y: torch.cos(20 * t) * y, torch.ones(1, dtype=torch.float64),
                       torch.tensor([0.0, 10.0], dtype=torch.float64), rtol=1e-10, atol=1e-10,
                       options={"max_steps": 20})
    msg = str(exc.value)
    assert "max_steps=20" in msg and "at t=" in msg and "before t=10" in msg


def test_unknown_and_bad_options(backend):
    with pytest.raises(InvalidInputError, match="unknown option.*step_szie.*allowed"):
        backend.odeint(decay, torch.ones(2), T, solver="rk4", options={"step_szie": 0.1})
    with pytest.raises(InvalidInputError, match="needs options=.*step_size"):
        backend.odeint(decay, torch.ones(2), T, solver="rk4")
    with pytest.raises(InvalidInputError, match="max_steps must be a positive integer"):
        backend.odeint(decay, torch.ones(2), T, options={"max_steps": 0})


def test_errors_are_value_errors_for_callers_that_catch_builtins(backend):
    with pytest.raises(ValueError):
        backend.odeint(decay, torch.ones(2), T, rtol=-1.0)
