"""The JAX solvers' numerics and input checking, end to end through ``backend.odeint``.

* fixed-step solvers show their theoretical order on DETEST problems (``tests/problems.py``,
  right-hand sides rewritten for jax below);
* every adaptive tableau shows tolerance proportionality with NFE non-decreasing;
* every registered tableau runs on every jax backend in float32 and float64 and gets y(T) and
  dy(T)/dy0 right on y' = -y;
* bad input gets the torch backends' odebench errors, before anything is traced; max_steps
  exceeded raises MaxStepsError eagerly, and returns NaN (reported through the stats
  callback) under jit.

float64 runs with ``jax_enable_x64`` switched on for this module (and restored after it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from odebench.errors import MaxStepsError, NonFiniteStateError, OdebenchError  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench.specs import SolveStats, Tableau  # noqa: E402
from odebench_jax.tape import SEGMENT_ROWS  # noqa: E402

from .problems import A1, A3, B4, D3  # noqa: E402

BACKENDS = ("jax-backprop", "jax-adjoint", "jax-adjoint-seminorm")
REG = make_registry()


pytestmark = pytest.mark.usefixtures("jax_x64")  # float64 in jax for this module (conftest)


# ---------------------------------------------------------------------------------------
# jax right-hand sides of the DETEST problems (module-level functions: compiled once)
# ---------------------------------------------------------------------------------------

def _a1(t, y, args):
    return -y


def _a2(t, y, args):
    return -0.5 * y**3


def _a3(t, y, args):
    return y * jnp.cos(t)


def _b4(t, y, args):
    y1, y2, y3 = y[0], y[1], y[2]
    r = jnp.sqrt(y1 * y1 + y2 * y2)
    return jnp.stack([-y2 - y1 * y3 / r, y1 - y2 * y3 / r, y1 / r])


def _kepler(t, y, args):
    r3 = (y[0] * y[0] + y[1] * y[1]) ** 1.5
    return jnp.stack([y[2], y[3], -y[0] / r3, -y[1] / r3])


RHS = {"A1": _a1, "A2": _a2, "A3": _a3, "B4": _b4, "D1": _kepler, "D3": _kepler}


def _solve(problem, solver, t, backend="jax-adjoint", **kw):
    b = REG.backend(backend)
    ys = b.odeint(RHS[problem.name], jnp.asarray(problem.y0, jnp.float64), jnp.asarray(t, jnp.float64),
                  solver=solver, **kw)
    return np.asarray(ys), b.last_stats


def _slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def test_backends_registered_without_importing_jax_at_registration():
    for name in BACKENDS:
        entry = REG.get("backend", name)
        assert entry.spec.framework == "jax" and entry.spec.requires == ("jax",)
        backend = REG.backend(name)
        assert backend.framework == "jax" and backend.name == name


# ---------------------------------------------------------------------------------------
# 1. Fixed-step solvers: observed order of convergence (as tests/test_torch_solvers.py)
# ---------------------------------------------------------------------------------------

FIXED = {"euler": (1, (200, 400, 800, 1600)), "midpoint": (2, (100, 200, 400, 800)), "rk4": (4, (100, 200, 400, 800))}
FIXED_PROBLEMS = (A3, B4)  # (each problem x solver is one compiled program; step sizes are traced)


@pytest.mark.parametrize("problem", FIXED_PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("solver", sorted(FIXED))
def test_fixed_step_order(solver, problem):
    order, steps = FIXED[solver]
    t = np.linspace(0.0, problem.t1, 11)
    exact = np.stack([problem.exact(ti) for ti in t])
    hs, errors = [], []
    for n in steps:
        ys, stats = _solve(problem, solver, t, options={"step_size": problem.t1 / n})
        assert stats.steps_accepted == n and stats.steps_rejected == 0
        assert stats.nfe_forward == n * REG.solver(solver).stages
        hs.append(problem.t1 / n)
        errors.append(float(np.max(np.max(np.abs(ys - exact), axis=1) / np.max(np.abs(exact), axis=1))))
    assert all(e2 < e1 for e1, e2 in zip(errors, errors[1:])), errors
    slope = _slope(hs, errors)
    assert abs(slope - order) <= 0.3, f"{solver} on {problem.name}: slope {slope:.3f}, errors {errors}"


def test_fixed_step_splits_each_interval():
    """Each output interval is split into ceil(|dt| / step_size) equal steps."""
    _, stats = _solve(A1, "rk4", [0.0, 0.25, 1.0], options={"step_size": 0.1})
    assert stats.steps_accepted == 3 + 8


# ---------------------------------------------------------------------------------------
# 2. Adaptive solvers: tolerance proportionality
# ---------------------------------------------------------------------------------------

TOLS = [10.0**-k for k in range(3, 10)]
TOLS_BY_SOLVER = {"adaptive_heun": [10.0 ** (-3 - k / 2) for k in range(7)]}
ADAPTIVE = ("adaptive_heun", "bosh3", "dopri5", "tsit5", "dopri8", "rk8_13m")
ADAPTIVE_PROBLEMS = (A3, D3)  # (one compiled program per problem x solver; tolerances are traced)


def test_every_adaptive_tableau_is_covered():
    registered = {n for n in REG.names("solver") if isinstance(REG.solver(n), Tableau) and REG.solver(n).adaptive}
    assert set(ADAPTIVE) >= {n for n in registered if n in ADAPTIVE}
    assert {"dopri5", "tsit5", "bosh3", "dopri8"} <= registered


@pytest.mark.parametrize("problem", ADAPTIVE_PROBLEMS, ids=lambda p: p.name)
@pytest.mark.parametrize("solver", ADAPTIVE)
def test_tolerance_proportionality(solver, problem):
    tols = TOLS_BY_SOLVER.get(solver, TOLS)
    exact = problem.exact(problem.t1)
    errors, nfes = [], []
    for tol in tols:
        ys, stats = _solve(problem, solver, [0.0, problem.t1], rtol=tol, atol=tol)
        errors.append(float(np.max(np.abs(ys[-1] - exact))))
        nfes.append(stats.nfe_forward)
    assert all(e > 0 for e in errors)
    slope = _slope(tols, errors)
    assert abs(slope - 1.0) <= 0.5, f"{solver} on {problem.name}: slope {slope:.3f}, errors {errors}"
    assert all(n2 >= n1 for n1, n2 in zip(nfes, nfes[1:])), f"NFE not non-decreasing: {nfes}"


# ---------------------------------------------------------------------------------------
# 3. Every registered tableau on every jax backend, float32 and float64
# ---------------------------------------------------------------------------------------

def _tableaus():
    return [n for n in REG.names("solver") if isinstance(REG.solver(n), Tableau)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("solver", _tableaus())
def test_every_tableau_every_backend_a1(solver, dtype):
    spec = REG.solver(solver)
    dtype = jnp.dtype(dtype)
    if spec.adaptive:
        tol = 1e-5 if dtype == jnp.float32 else 1e-7
        kwargs = {"rtol": tol, "atol": tol}
    else:
        kwargs = {"options": {"step_size": 1e-3}}
    T = 1.0
    y0 = jnp.asarray([1.0, 2.0, -0.5], dtype)
    t = jnp.asarray([0.0, 0.25, T], dtype)
    expected = np.asarray(y0)[None, :] * np.exp(-np.asarray(t, np.float64))[:, None]
    for name in ("jax-backprop", "jax-adjoint"):  # the seminorm adjoint's forward is jax-adjoint's
        backend = REG.backend(name)

        def loss(y0):
            ys = backend.odeint(_a1, y0, t, solver=solver, **kwargs)
            return ys[-1].sum(), ys

        (_, ys), grad = jax.value_and_grad(loss, has_aux=True)(y0)
        assert ys.shape == (3, 3) and ys.dtype == dtype and grad.dtype == dtype
        stats = backend.last_stats
        assert stats.nfe_forward > 0
        if name == "jax-backprop":  # one recomputed step (all its stages) per accepted step, and
            fsal = 1 if spec.fsal else 0  # an FSAL tableau's f(t0, y0) pulled back once more
            steps = len(spec.c) * stats.steps_accepted + fsal
            if stats.steps_accepted <= SEGMENT_ROWS:
                assert stats.nfe_backward == steps
            else:  # and the segments taped again: fewer evaluations than the whole forward
                assert steps < stats.nfe_backward < steps + stats.nfe_forward
            assert stats.steps_accepted_backward == 0
        else:
            assert stats.nfe_backward > 0 and stats.steps_accepted_backward > 0
        rel = float(np.max(np.abs(np.asarray(ys, np.float64) - expected)) / np.max(np.abs(expected)))
        assert rel <= 1e-3, f"{solver} on {name} ({dtype}): relative error {rel:.2e}"
        want = math.exp(-T)
        grad_rel = float(np.max(np.abs(np.asarray(grad, np.float64) - want)) / want)
        assert grad_rel <= 1e-3, f"{solver} on {name} ({dtype}): dy(T)/dy0 = {grad}, want {want:.6f}"


def test_float32_without_x64():
    """With x64 off everything (state and step-size control) is float32."""
    jax.config.update("jax_enable_x64", False)
    try:
        backend = REG.backend("jax-adjoint")
        ys = backend.odeint(_a1, jnp.ones(2), jnp.asarray([0.0, 1.0]), rtol=1e-5, atol=1e-5)
        assert ys.dtype == jnp.float32
        assert abs(float(ys[-1, 0]) - math.exp(-1.0)) < 1e-4
        grad = jax.grad(lambda y: backend.odeint(_a1, y, jnp.asarray([0.0, 1.0]), rtol=1e-5, atol=1e-5)[-1].sum())(jnp.ones(2))
        assert abs(float(grad[0]) - math.exp(-1.0)) < 1e-4
    finally:
        jax.config.update("jax_enable_x64", True)


def test_decreasing_times_and_tuple_state():
    backend = REG.backend("jax-adjoint")
    y = backend.odeint(_a1, jnp.ones(1), jnp.asarray([1.0, 0.0]), rtol=1e-9, atol=1e-9)
    assert abs(float(y[-1, 0]) - math.e) < 1e-7
    zs, ls = backend.odeint(lambda t, s, a: (-s[0], 2.0 * s[1]), (jnp.ones((2, 3)), jnp.ones(1)),
                            jnp.asarray([0.0, 0.5, 1.0]), rtol=1e-9, atol=1e-9)
    assert zs.shape == (3, 2, 3) and ls.shape == (3, 1)
    assert abs(float(zs[-1, 0, 0]) - math.exp(-1)) < 1e-7 and abs(float(ls[-1, 0]) - math.exp(2)) < 1e-6


def test_single_output_time_returns_y0():
    backend = REG.backend("jax-backprop")
    ys = backend.odeint(_a1, jnp.ones(2), jnp.asarray([0.0]))
    assert ys.shape == (1, 2) and backend.last_stats.nfe_forward == 0


# ---------------------------------------------------------------------------------------
# 4. Errors
# ---------------------------------------------------------------------------------------

T01 = [0.0, 1.0]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return REG.backend(request.param)


def _oscillating(t, y, args):
    return jnp.cos(20 * t) * y


def test_max_steps_raises_eagerly(backend):
    with pytest.raises(MaxStepsError) as exc:
        backend.odeint(_oscillating, jnp.ones(1), jnp.asarray([0.0, 10.0]), rtol=1e-10, atol=1e-10,
                       options={"max_steps": 20})
    msg = str(exc.value)
    assert "max_steps=20" in msg and "at t=" in msg and "before t=10" in msg
    # also inside an eager jax.grad
    with pytest.raises(MaxStepsError, match="max_steps=20"):
        jax.grad(lambda y: backend.odeint(_oscillating, y, jnp.asarray([0.0, 10.0]), rtol=1e-10, atol=1e-10,
                                          options={"max_steps": 20})[-1].sum())(jnp.ones(1))


def test_max_steps_under_jit_returns_nan_and_its_counts_name_the_error(backend):
    """Inside jit nothing can raise: the solution is NaN, and the returned counts carry the
    failure, which collect raises with its message; the attempt's counts are kept."""
    from odebench_jax import collect

    @jax.jit
    def solve(y0):
        return backend.odeint(_oscillating, y0, jnp.asarray([0.0, 10.0]), rtol=1e-10, atol=1e-10,
                              options={"max_steps": 20}, return_counts=True)

    ys, counts = solve(jnp.ones(1))
    assert bool(jnp.all(jnp.isnan(ys)))
    assert int(counts.steps_accepted) + int(counts.steps_rejected) == 20
    with pytest.raises(MaxStepsError, match="max_steps=20"):
        collect(SolveStats(), counts)


@pytest.mark.parametrize("solver,options", [("dopri5", None), ("rk4", {"step_size": 0.1})])
def test_nan_appearing_in_state(solver, options):
    def blows_up(t, y, args):
        return jnp.where(t > 0.5, jnp.full_like(y, jnp.nan), -y)

    with pytest.raises(NonFiniteStateError, match="non-finite value") as exc:
        REG.backend("jax-adjoint").odeint(blows_up, jnp.ones(2), T01, solver=solver, options=options)
    assert "t=" in str(exc.value)


def test_finite_time_blow_up_is_reported():
    with pytest.raises(OdebenchError, match=r"at t=(0\.9999|1\.0000)"):
        REG.backend("jax-adjoint").odeint(lambda t, y, a: y * y, jnp.ones(1), jnp.asarray([0.0, 2.0]),
                                          rtol=1e-6, atol=1e-6, options={"max_steps": 100_000})
