"""torch and jax integrators take the same steps on the same problem.

The same MLP (weights from numpy), the same y0, the same tolerance: the solutions agree to
1e-6 (relative, float64) and the accepted step counts to +-1 (in practice they are equal:
both controllers run the same float64 arithmetic).  Also for a tuple state, and the
adjoint's backward solve (same mixed norm over y, a and each parameter, same first step of
each backward segment: warm, restarted or fixed).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
import jax.numpy as jnp  # noqa: E402

from odebench.plugins import make_registry  # noqa: E402
from odebench.specs import SolveStats  # noqa: E402

from .problems import TorchMLP, mlp_weights as _weights  # noqa: E402

REG = make_registry()
SOLVERS = ("dopri5", "tsit5", "bosh3", "dopri8")
TOLS = (1e-4, 1e-7, 1e-10)


pytestmark = pytest.mark.usefixtures("jax_x64")  # float64 in jax for this module (conftest)


def jax_mlp(t, y, p):
    tt = jnp.broadcast_to(t, y.shape[:-1] + (1,))
    h = jnp.tanh(jnp.concatenate([y, tt], axis=-1) @ p["W1"].T + p["b1"])
    return h @ p["W2"].T + p["b2"]


W = _weights()
Y0 = np.random.default_rng(1).normal(size=(4, 3))
T = np.array([0.0, 0.4, 1.1, 2.0])


@pytest.mark.parametrize("solver", SOLVERS)
def test_same_solution_and_steps(solver):
    func = TorchMLP(W)
    params = {k: jnp.asarray(v) for k, v in W.items()}
    tb, jb = REG.backend("torch-backprop"), REG.backend("jax-adjoint")
    for tol in TOLS:
        with torch.no_grad():
            yt = tb.odeint(func, torch.tensor(Y0), torch.tensor(T), solver=solver, rtol=tol, atol=tol).numpy()
        st = tb.last_stats
        yj = np.asarray(jb.odeint(jax_mlp, jnp.asarray(Y0), jnp.asarray(T), params, solver=solver, rtol=tol, atol=tol))
        sj = jb.last_stats
        rel = float(np.max(np.abs(yj - yt)) / np.max(np.abs(yt)))
        msg = (f"{solver} at {tol:g}: rel {rel:.2e}, accepted torch {st.steps_accepted} jax {sj.steps_accepted}, "
               f"rejected {st.steps_rejected}/{sj.steps_rejected}, nfe {st.nfe_forward}/{sj.nfe_forward}")
        assert rel <= 1e-6, msg
        assert abs(st.steps_accepted - sj.steps_accepted) <= 1, msg


def test_tuple_state_same_solution_and_steps():
    w = _weights(dim=2, hidden=8, seed=5)
    func = TorchMLP(w)
    params = {k: jnp.asarray(v) for k, v in w.items()}

    def torch_pair(t, state):
        z, logp = state
        dz = func(t, z)
        return dz, -(dz * z).sum(-1, keepdim=True)

    def jax_pair(t, state, p):
        z, logp = state
        dz = jax_mlp(t, z, p)
        return dz, -jnp.sum(dz * z, axis=-1, keepdims=True)

    z0 = np.random.default_rng(2).normal(size=(5, 2))
    t = np.array([0.0, 0.5, 1.5])
    tb, jb = REG.backend("torch-backprop"), REG.backend("jax-backprop")
    with torch.no_grad():
        zt, lt = tb.odeint(torch_pair, (torch.tensor(z0), torch.zeros(5, 1, dtype=torch.float64)), torch.tensor(t),
                           rtol=1e-7, atol=1e-7)
    zj, lj = jb.odeint(jax_pair, (jnp.asarray(z0), jnp.zeros((5, 1))), jnp.asarray(t), params, rtol=1e-7, atol=1e-7)
    for a, b in ((zj, zt), (lj, lt)):
        b = b.numpy()
        assert float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))) <= 1e-6
    assert abs(tb.last_stats.steps_accepted - jb.last_stats.steps_accepted) <= 1
    assert tb.last_stats.nfe_forward == jb.last_stats.nfe_forward


@pytest.mark.parametrize("adjoint_options", [None, {"first_step": None}, {"first_step": 0.05}],
                         ids=["warm", "restart", "fixed"])
def test_adjoint_backward_same_steps_and_gradients(adjoint_options):
    """torch-adjoint and jax-adjoint: same backward solve (mixed norm over y, a and each
    parameter; the same first step of every backward segment), same gradients."""
    func = TorchMLP(W)
    params = {k: jnp.asarray(v) for k, v in W.items()}
    y0 = torch.tensor(Y0, requires_grad=True)
    tb = REG.backend("torch-adjoint")
    ys = tb.odeint(func, y0, torch.tensor(T), rtol=1e-8, atol=1e-8, adjoint_options=adjoint_options)
    (ys[-1] ** 2).sum().backward()
    st = tb.last_stats

    jb = REG.backend("jax-adjoint")
    stats = SolveStats()
    gy, gp = jax.grad(lambda y, p: jnp.sum(jb.odeint(jax_mlp, y, jnp.asarray(T), p, rtol=1e-8, atol=1e-8,
                                                     stats=stats, adjoint_options=adjoint_options)[-1] ** 2),
                      argnums=(0, 1))(jnp.asarray(Y0), params)
    assert abs(st.steps_accepted_backward - stats.steps_accepted_backward) <= 1, (st, stats)
    assert abs(st.steps_rejected_backward - stats.steps_rejected_backward) <= 1, (st, stats)
    assert abs(st.nfe_backward - stats.nfe_backward) <= 7, (st, stats)
    np.testing.assert_allclose(np.asarray(gy), y0.grad.numpy(), rtol=1e-6, atol=1e-9)
    for k in W:
        np.testing.assert_allclose(np.asarray(gp[k]), getattr(func, k).grad.numpy(), rtol=1e-6, atol=1e-9)
