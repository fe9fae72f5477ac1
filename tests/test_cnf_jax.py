"""The cnf task in jax: same weights, batches and initial loss as torch; the exact trace; training."""

import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")
torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

try:
    import odebench_tasks.cnf  # noqa: F401
except ImportError:  # editable install made before plugins/odebench_tasks existed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from odebench.plugins import make_registry  # noqa: E402
from odebench.protocols import BoundOdeint  # noqa: E402
from odebench.specs import SolveStats  # noqa: E402
from odebench_tasks.cnf.jax_model import DivergenceODE, JaxCNF, exact_trace, hutchinson_trace  # noqa: E402
from odebench_tasks.cnf.options import CNFOptions  # noqa: E402
from odebench_tasks.cnf.torch_model import TorchCNF  # noqa: E402

SMALL = dict(n_train=256, n_test=128, batch_size=64, hidden=16, layers=2)
A = np.array([[0.3, -1.1], [0.7, -0.5]])


REGISTRY = make_registry()


def jax_backend(name="jax-adjoint"):
    return REGISTRY.backend(name)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_initial_loss_matches_torch_float64(trace):
    options = CNFOptions(trace=trace, noise="rademacher", **SMALL)
    torch_problem = TorchCNF().setup(options, seed=3, device="cpu", dtype="float64")
    loss_torch = float(torch_problem.loss(torch_problem.batch(0), partial(
        REGISTRY.backend("torch-adjoint").odeint, solver="dopri5", rtol=1e-8, atol=1e-8)).detach())
    with jax.enable_x64(True):
        problem = JaxCNF().setup(options, seed=3, device="cpu", dtype="float64")
        state = torch_problem.model.state_dict()
        assert sorted(problem.model) == sorted(state)
        for name, value in problem.model.items():  # the same float64 numbers, not just close ones
            assert value.dtype == jnp.float64
            np.testing.assert_array_equal(np.asarray(value), state[name].numpy())
        batch = problem.batch(0)
        np.testing.assert_array_equal(np.asarray(batch["x"]), torch_problem.batch(0).numpy())
        assert ("eps" in batch) == (trace == "hutchinson")
        stats = SolveStats()
        odeint = partial(jax_backend().odeint, solver="dopri5", rtol=1e-8, atol=1e-8, stats=stats)
        loss_jax = float(problem.loss(batch, odeint))
    assert loss_jax == pytest.approx(loss_torch, rel=1e-5)
    assert stats.nfe_forward > 0 and stats.nfe_backward == 0


def test_exact_trace_of_linear_field():
    """f = A z: tr(df/dz) = tr A for every sample, and log p changes by -t tr A along the flow."""
    with jax.enable_x64(True):
        z = jnp.asarray(np.random.default_rng(0).normal(size=(7, 2)))
        dz, trace = exact_trace(lambda x: x @ jnp.asarray(A).T, z)
        np.testing.assert_allclose(np.asarray(trace), np.full(7, np.trace(A)), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(dz), np.asarray(z) @ A.T, rtol=1e-12)
        eps = jnp.asarray(np.random.default_rng(1).normal(size=(7, 2)))
        _, estimate = hutchinson_trace(lambda x: x @ jnp.asarray(A).T, z, eps)
        np.testing.assert_allclose(np.asarray(estimate), np.einsum("ni,ij,nj->n", eps, A, eps), rtol=1e-12)

        func = DivergenceODE(lambda t, x, a: x @ a.T, "exact")
        T = 0.8
        zs, logps = jax_backend().odeint(func, (z, jnp.zeros((7, 1))), jnp.asarray([0.0, 0.5 * T, T]),
                                         args=(jnp.asarray(A), None), solver="dopri5", rtol=1e-9, atol=1e-9)
        times = np.array([0.0, 0.5 * T, T])
        np.testing.assert_allclose(np.asarray(logps)[:, :, 0], np.outer(-times * np.trace(A), np.ones(7)), atol=1e-8)
        expected = np.asarray(z) @ np.asarray(jax.scipy.linalg.expm(T * jnp.asarray(A))).T
        np.testing.assert_allclose(np.asarray(zs[-1]), expected, rtol=1e-6, atol=1e-8)


def test_training_reduces_loss_and_counts_one_forward_one_backward():
    backend = jax_backend("jax-adjoint")
    options = CNFOptions(**{**SMALL, "layers": 1, "iterations": 8})
    problem = JaxCNF().setup(options, seed=0, device="cpu", dtype="float32")
    initial = problem.model
    stats = SolveStats()
    odeint = BoundOdeint(backend, "dopri5", 1e-4, 1e-4, None, stats)
    trainer = make_registry().runtime("jax").trainer(problem, odeint, "cpu")
    assert trainer.n_params() == sum(int(np.size(v)) for v in initial.values())
    eager = SolveStats()  # one step's solve, forward and backward, run eagerly
    jax.grad(lambda p: problem.loss_fn(p, problem.batch(0), odeint.with_stats(eager)))(initial)
    losses = []
    for i in range(options.iterations):
        stats.reset()
        result = trainer.step(i, probe_memory=(i == 0))
        losses.append(result.loss)
        # the counts of the value-and-grad, returned by it; the forward-only timing run counts nothing
        assert stats.nfe_forward > 0 and stats.nfe_backward > 0 and stats.steps_accepted > 0
        assert i > 0 or stats == eager, (stats, eager)
        assert trainer.timing_stats == SolveStats()
        assert result.time_forward_s > 0 and result.time_backward_s >= 0
        if i == 0:
            assert result.peak_memory_bytes > 0  # xla_temp_bytes of the value-and-grad program
            assert result.compile_s > 0  # the first step compiles, and says so apart from its times
        else:
            assert result.peak_memory_bytes is None and result.compile_s is None
        assert not result.probed  # the memory figure is read outside the clock
    assert problem.model is not initial  # the trainer writes the parameters back
    assert all(np.isfinite(losses))
    # batch 0 again, at the trained parameters, through the cell's compiled forward program
    batch = problem.batch(0)
    programs, compile_s = trainer._programs(batch)
    assert compile_s is None  # compiled once per cell
    after = trainer.forward_loss(batch)
    assert after < losses[0] - 0.1, (losses, after)


def test_trainer_times_programs_without_callbacks(name="jax-adjoint"):
    """odebench's backends: no host callback in any of the trainer's programs (the counts are
    the value-and-grad's outputs: the gradient of a tally)."""
    import re

    problem = JaxCNF().setup(CNFOptions(**{**SMALL, "layers": 1}), seed=0, device="cpu", dtype="float32")
    trainer = make_registry().runtime("jax").trainer(problem, BoundOdeint(jax_backend(name), "dopri5", 1e-4, 1e-4,
                                                                          None, SolveStats()), "cpu")
    programs, _ = trainer._programs(problem.batch(0))
    assert trainer.counting == "data" and programs.count_grad is None
    for program in (programs.loss, programs.grad):
        assert not re.findall(r'custom_call_target="[a-z_]*callback"', program.as_text())


def test_trainer_reports_a_failed_solve():
    """max_steps exhausted inside the trainer's programs: NaN loss, a failed solve in the
    backend's last_error and a RuntimeWarning saying so, the counts of the attempt kept."""
    backend = jax_backend("jax-adjoint")
    problem = JaxCNF().setup(CNFOptions(**{**SMALL, "layers": 1}), seed=0, device="cpu", dtype="float32")
    stats = SolveStats()
    trainer = make_registry().runtime("jax").trainer(problem, BoundOdeint(backend, "dopri5", 1e-6, 1e-6,
                                                                          {"max_steps": 2}, stats), "cpu")
    backend.last_error = None
    with pytest.warns(RuntimeWarning, match="1 forward solve"):
        result = trainer.step(0)
    assert trainer.counting == "data" and np.isnan(result.loss)
    assert "1 forward solve" in str(backend.last_error) and stats.nfe_forward > 0
