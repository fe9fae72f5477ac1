"""benchmarks/problems.py: one name per problem, every name in the module's index, and the
problems are the ones the published tables measured (their NFE and their arrays' relations)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import problems


def test_each_problem_has_one_name_and_is_in_the_index():
    torch_names, solve_names = set(problems.TORCH_PROBLEMS), set(problems.SOLVE_PROBLEMS)
    assert not torch_names & solve_names, "two problems under one name"
    index = problems.__doc__
    for name in torch_names | solve_names:
        assert f"\n{name} " in index, f"{name} is missing from the module's index"


def test_torch_mlp_counts_as_its_table_did():
    """The torch vs torchdiffeq table's mlp cell at tol 1e-3: 14 forward evaluations (backprop),
    14 and 26 with the adjoint, counted by the problem's counter and by odebench alike."""
    pytest.importorskip("torch")
    import odebench

    problem = problems.TORCH_PROBLEMS["mlp"]()
    for backend, nfe in (("torch-backprop", (14, 0)), ("torch-adjoint", (14, 26))):
        solver = odebench.backend(backend)
        kwargs = {"adjoint_options": {"first_step": None}} if backend == "torch-adjoint" else {}
        problem.counter.calls = 0
        loss, _ = problem.loss(lambda f, y0, t: solver.odeint(f, y0, t, solver="dopri5", rtol=1e-3, atol=1e-3, **kwargs))
        forward = problem.counter.calls
        loss.backward()
        assert (forward, problem.counter.calls - forward) == nfe
        assert (solver.last_stats.nfe_forward, solver.last_stats.nfe_backward) == nfe


def test_mlp_wide_is_mlp_normal_scaled():
    pytest.importorskip("jax")
    normal, wide = problems.solve_problem("mlp-normal"), problems.solve_problem("mlp-wide")
    assert np.array_equal(normal.y0, wide.y0) and normal.span == wide.span == (0.0, 1.0)
    for (w, b), (w_wide, b_wide) in zip(normal.args, wide.args):
        assert np.allclose(2.5 * np.asarray(w), w_wide, rtol=1e-6) and np.allclose(2.5 * np.asarray(b), b_wide, rtol=1e-6)
    assert normal.y0.shape == (512, 2) and [w.shape for w, _ in normal.args] == [(64, 2), (64, 64), (2, 64)]


def test_odenet_small_starts_at_the_networks_own_stem():
    """odenet-small's y0 is the mnist network's features at its ODE block: 8 digits, width 16, 6x6."""
    pytest.importorskip("jax")
    problem = problems.solve_problem("odenet-small")
    assert problem.y0.shape == (8, 16, 6, 6)
    assert np.isfinite(float(problem.loss(problem.field(0.0, problem.y0, problem.args))))
