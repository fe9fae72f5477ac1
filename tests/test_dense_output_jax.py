"""Dense output in the JAX integrator: the torch loop's interpolant, steps and counts; reverse
mode through the interpolant (jax-backprop's tape) equal to torch's autograd."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

import odebench  # noqa: E402
from odebench.specs import SolveStats  # noqa: E402

from .problems import TorchMLP, mlp_weights  # noqa: E402
from .test_cross_framework import jax_mlp  # noqa: E402
from .test_dense_output import LOSS_WEIGHTS, T50, Y0, _rel, _torch_grads  # noqa: E402

pytestmark = pytest.mark.usefixtures("jax_x64")
W = mlp_weights()


def _a3(t, y, args):
    return y * jnp.cos(t)


def test_many_outputs_cost_no_evaluations_in_jax():
    backend = odebench.backend("jax-adjoint")
    counts = {}
    for n, step in ((2, None), (201, None), (201, True)):
        t = jnp.linspace(0.0, 20.0, n)
        ys = backend.odeint(_a3, jnp.ones(1), t, solver="dopri5", rtol=1e-6, atol=1e-6,
                            options={"step_to_outputs": step})
        assert float(jnp.max(jnp.abs(ys[:, 0] - jnp.exp(jnp.sin(t))))) < 5e-5
        counts[(n, step)] = backend.last_stats.nfe_forward
    assert counts == {(2, None): 482, (201, None): 482, (201, True): 1208}  # as torch


@pytest.mark.parametrize("solver", ["dopri5", "tsit5", "bosh3", "adaptive_heun"])
def test_torch_and_jax_agree_with_many_outputs(solver):
    tol = 1e-7 if solver not in ("bosh3", "adaptive_heun") else 1e-5
    tb, jb = odebench.backend("torch-backprop"), odebench.backend("jax-backprop")
    with torch.no_grad():
        yt = tb.odeint(TorchMLP(W), torch.tensor(Y0), torch.tensor(T50), solver=solver, rtol=tol, atol=tol).numpy()
    params = {k: jnp.asarray(v) for k, v in W.items()}
    yj = np.asarray(jb.odeint(jax_mlp, jnp.asarray(Y0), jnp.asarray(T50), params, solver=solver, rtol=tol, atol=tol))
    assert float(np.max(np.abs(yj - yt)) / np.max(np.abs(yt))) <= 1e-6
    assert abs(tb.last_stats.steps_accepted - jb.last_stats.steps_accepted) <= 1
    assert tb.last_stats.nfe_forward == jb.last_stats.nfe_forward


def _jax_grads(name, solver, tol):
    from odebench_jax import collect, tally

    backend = odebench.backend(name)
    params = {k: jnp.asarray(v) for k, v in W.items()}

    def loss(y, p, tl):
        ys = backend.odeint(jax_mlp, y, jnp.asarray(T50), p, solver=solver, rtol=tol, atol=tol, tally=tl)
        return jnp.sum(ys * LOSS_WEIGHTS)

    gy, gp, tally_grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(jnp.asarray(Y0), params, tally())
    return [np.asarray(gy)] + [np.asarray(gp[k]) for k in W], collect(SolveStats(), tally_grad=tally_grad)


@pytest.mark.parametrize("solver,tol", [("dopri5", 1e-8), ("bosh3", 1e-6), ("adaptive_heun", 1e-4)],
                         ids=["dense", "fsal-hermite", "hermite"])
def test_backprop_through_the_interpolant_equals_torchs(solver, tol):
    """jax-backprop's tape now carries, per step, the outputs it produced; their cotangents go
    through the interpolation weights (and f at the step's end for a non-FSAL Hermite)."""
    ref, ref_stats = _torch_grads("torch-backprop", solver, tol)
    grads, stats = _jax_grads("jax-backprop", solver, tol)
    assert _rel(grads, ref) <= 1e-10
    assert stats.nfe_forward == ref_stats.nfe_forward
    tableau = odebench.solver(solver)
    if tableau.fsal:  # each step's stages, and the first f(t0, y0) once more
        assert stats.nfe_backward == tableau.stages * ref_stats.steps_accepted + 1
    else:  # every stage, and f at the end of the steps that interpolated
        assert stats.nfe_backward >= tableau.stages * ref_stats.steps_accepted


def test_jax_adjoint_equals_backprop_with_50_output_times():
    ref, _ = _torch_grads("torch-backprop", "dopri5", 1e-10)
    grads, stats = _jax_grads("jax-adjoint", "dopri5", 1e-10)
    assert _rel(grads, ref) <= 1e-6 and stats.nfe_backward > 0
