"""`--task detest`: no training; DETEST problems solved per backend x solver x tolerance, the error
against the closed form as the metric, NFE and forward time per solve, through the CLI."""

import importlib.util
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from odebench.cli import main

pytest.importorskip("torch")

BACKENDS = ["torch-backprop",
            pytest.param("jax-backprop", marks=pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                                                  reason="jax is not installed"))]
TOLS = (1e-4, 1e-7)
TIMES = np.linspace(0.0, 20.0, 21)  # the task's default output times


@pytest.fixture(scope="module", autouse=True)
def _restore_x64():
    """float64 cells switch jax's x64 mode on for the process; later test modules get it back."""
    if importlib.util.find_spec("jax") is None:
        yield
        return
    import jax

    old = jax.config.read("jax_enable_x64")
    yield
    jax.config.update("jax_enable_x64", old)


def run_cli(args, expect=0):
    result = CliRunner().invoke(main, ["run", "--task", "detest", "--quiet", *args])
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture(scope="module", params=BACKENDS)
def adaptive(request, tmp_path_factory):
    """dopri5 and bosh3 at two tolerances, float64, one warm-up and one timed solve; on A3 and B4
    (JAX: A3 alone, each problem is a program to compile)."""
    out = tmp_path_factory.mktemp("detest")
    problems = "A3" if request.param.startswith("jax") else "A3,B4"
    run_cli(["--backend", request.param, "--solver", "dopri5,bosh3", "--tol", ",".join(map(str, TOLS)),
             "--dtype", "float64", "--steps", "2", "--opt", f"problems={problems}", "--out", str(out), "--run-id", "wp"])
    return request.param, pd.read_parquet(out / "wp.parquet")


def test_every_cell_is_a_solve_with_no_training(adaptive):
    _, frame = adaptive
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}, frame[["solver", "rtol", "error"]]
    assert set(frame["metric_name"]) == {"max_abs_error"} and not frame["metric_higher_is_better"].any()
    assert set(frame["dtype"]) == {"float64"} and set(frame["steps"]) == {2}
    assert frame["train_loss"].isna().all() and frame["peak_memory_bytes"].isna().all()
    assert (frame["n_params"] == 0).all() and (frame["nfe_backward"] == 0).all()
    assert (frame["time_forward_s"] > 0).all() and (frame["time_backward_s"] == 0).all()
    assert frame["nfe_forward"].eq(frame["nfe_eval"]).all()  # the same solves, counted again


@pytest.mark.parametrize("solver", ["dopri5", "bosh3"])
def test_error_and_nfe_follow_the_tolerance(adaptive, solver):
    _, frame = adaptive
    rows = frame[frame["solver"] == solver].set_index("rtol")
    loose, tight = rows.loc[TOLS[0]], rows.loc[TOLS[1]]
    assert tight["metric"] < loose["metric"] / 10
    assert tight["nfe_forward"] > loose["nfe_forward"]
    # the global error over [0, 20] within 20x the tolerance's scale (|y| reaches 3 on B4); bosh3's
    # third order and cubic Hermite output reach 25x on A3 (deterministic: the same in both frameworks)
    assert tight["metric"] <= {"dopri5": 20, "bosh3": 30}[solver] * TOLS[1] * (1 + 3.0), tight["metric"]


def _solve_directly(backend_name, solver, tol):
    """A3 (y' = y cos t) through the backend's own odeint, outside the task."""
    import odebench

    backend = odebench.registry().backend(backend_name)
    if backend_name.startswith("jax"):
        import jax.numpy as jnp
        from odebench_jax import enable_float64

        enable_float64()
        f, y0, t = (lambda t, y, args: y * jnp.cos(t)), jnp.ones(1, jnp.float64), jnp.asarray(TIMES)
    else:
        import torch

        f, y0, t = (lambda t, y: y * torch.cos(t)), torch.ones(1, dtype=torch.float64), torch.tensor(TIMES)
    stats = odebench.SolveStats()
    ys = backend.odeint(f, y0, t, solver=solver, rtol=tol, atol=tol, stats=stats)
    return np.asarray(ys, dtype=np.float64)[:, 0], stats.nfe_forward


def test_metric_is_the_error_against_the_closed_form(adaptive):
    backend, frame = adaptive
    exact = np.array([math.exp(math.sin(t)) for t in TIMES])
    for row in frame.to_dict("records"):
        ys, nfe = _solve_directly(backend, row["solver"], row["rtol"])
        per = json.loads(row["detest_problems"])
        assert per["A3"]["max_abs_error"] == pytest.approx(float(np.abs(ys - exact).max()), rel=1e-6)
        assert per["A3"]["nfe_forward"] == nfe
        assert row["metric"] == max(p["max_abs_error"] for p in per.values())
        assert row["nfe_forward"] == sum(p["nfe_forward"] for p in per.values())


def test_fixed_step_solver_gets_the_task_step_and_shows_order_4(tmp_path):
    """rk4 beside dopri5 in one run (the task's step_size), then with --solver-opt's step: halving
    the step divides the error by about 2^4."""
    run_cli(["--backend", "torch-backprop", "--solver", "dopri5,rk4", "--tol", "1e-6", "--dtype", "float64",
             "--steps", "2", "--opt", "problems=A3,B4", "--opt", "step_size=0.1", "--out", str(tmp_path),
             "--run-id", "h1"])
    run_cli(["--backend", "torch-backprop", "--solver", "rk4", "--steps", "2",  # float64 by default (the task's)
             "--opt", "problems=A3,B4", "--solver-opt", "step_size=0.05", "--out", str(tmp_path), "--run-id", "h2"])
    first = pd.read_parquet(tmp_path / "h1.parquet").set_index("solver")
    second = pd.read_parquet(tmp_path / "h2.parquet").set_index("solver")
    assert set(first["status"]) == {"ok"} and set(second["status"]) == {"ok"}
    assert set(second["dtype"]) == {"float64"}  # detest's default_dtype, without --dtype
    rk4, halved = first.loc["rk4"], second.loc["rk4"]
    assert pd.isna(rk4["rtol"]) and json.loads(rk4["solver_options"]) == {"step_size": 0.1}
    assert json.loads(halved["solver_options"]) == {"step_size": 0.05}
    assert json.loads(first.loc["dopri5", "solver_options"]) == {}
    assert halved["nfe_forward"] == 2 * rk4["nfe_forward"] == 2 * 2 * 4 * 200  # 2 problems, 4 stages, 200 steps
    assert 16 / 1.6 < rk4["metric"] / halved["metric"] < 16 * 1.6


@pytest.mark.parametrize("args, needle", [
    (["--opt", "problems=A1,Z9"], "problems: unknown problem(s) Z9; known: A1, A2, A3, A4, B4, D1"),
    (["--opt", "problems= ,"], "problems: none named in ','"),
    (["--opt", "n_times=1"], "n_times must be an integer >= 2, got 1"),
    (["--opt", "step_size=-0.1"], "step_size must be a positive finite number, got -0.1"),
    (["--opt", "t1=abc"], "task option t1='abc' is not a valid float"),
    (["--steps", "1"], "iterations (--steps) must be at least 2"),
    (["--opt", "lr=0.1"], "unknown option(s) lr for task 'detest'"),
])
def test_bad_option_is_one_line_exit_2_before_anything_runs(tmp_path, args, needle):
    result = run_cli(["--backend", "torch-backprop", "--out", str(tmp_path), *args], expect=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("odebench: error: "), result.output
    assert needle in lines[0], lines[0]
    assert not list(tmp_path.glob("*.parquet"))


def test_jax_detest_times_a_program_without_callbacks_and_raises_its_failures():
    """odebench's JAX backends: the timed solve returns its counts (no host callback in it), the
    counts equal an eager solve's, and an exhausted max_steps still raises MaxStepsError."""
    pytest.importorskip("jax")
    from odebench.errors import MaxStepsError
    from odebench.grid import build_task_options
    from odebench.plugins import make_registry
    from odebench.protocols import BoundOdeint
    from odebench.specs import SolveStats

    reg = make_registry()
    spec = reg.get("task", "detest").spec
    backend = reg.backend("jax-adjoint")
    problem = spec.build("jax", build_task_options(spec, {"problems": "A3"}), model=spec.default_model.name,
                         seed=0, device="cpu", dtype="float32")
    stats = SolveStats()
    odeint = BoundOdeint(backend, "dopri5", 1e-5, 1e-5, None, stats)
    problem.timed_solve(odeint)
    program = problem._programs_for(odeint)[0]["A3"]
    assert program.returning and not re.findall(r'custom_call_target="[a-z_]*callback"', program.timed.as_text())
    eager = SolveStats()
    backend.odeint(problem.f["A3"], problem.y0["A3"], problem.t, solver="dopri5", rtol=1e-5, atol=1e-5, stats=eager)
    assert stats == eager and stats.nfe_forward > 0
    with pytest.raises(MaxStepsError, match="max_steps=3"):
        problem.timed_solve(BoundOdeint(backend, "dopri5", 1e-5, 1e-5, {"max_steps": 3}, SolveStats()))
