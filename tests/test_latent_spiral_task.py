"""The ``latent-spiral`` task (the paper's Table 2): the latent ODE and the RNN baseline through
the harness, equal initial losses across frameworks, training lowers the loss, dense output
keeps the forward NFE flat in the number of observation times, bad options stop the run."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

import odebench  # noqa: E402
from odebench.cli import main  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench.protocols import BoundOdeint  # noqa: E402
from odebench_tasks.latent_spiral.options import PAPER_OPTIONS, LatentSpiralOptions  # noqa: E402
from odebench_tasks.latent_spiral.params import n_params  # noqa: E402

SMALL = ["--opt", "n_train=40", "--opt", "n_test=20", "--opt", "batch_size=20", "--opt", "window=40",
         "--opt", "n_extrap=30", "--opt", "n_obs=12"]
REG = make_registry()


def run_cli(args, expect=0):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == expect, result.output
    return result


def test_table2_grid_through_the_harness(tmp_path):
    pytest.importorskip("jax")
    run_cli(["run", "--task", "latent-spiral", "--model", "latent-ode,rnn", "--backend", "torch-adjoint,jax-adjoint",
             "--steps", "3", *SMALL, "--out", str(tmp_path), "--run-id", "t2", "--quiet"])
    frame = pd.read_parquet(tmp_path / "t2.parquet")
    assert set(frame["status"]) == {"ok"}, frame["error"].tolist()
    ode, rnn = frame[frame["model"] == "latent-ode"], frame[frame["model"] == "rnn"]
    assert sorted(ode["backend"]) == ["jax-adjoint", "torch-adjoint"] and sorted(rnn["backend"]) == ["jax", "torch"]
    assert (ode["n_params"] == n_params("latent-ode")).all() and (rnn["n_params"] == n_params("rnn")).all()
    assert frame["metric_name"].eq("predictive_rmse").all() and (frame["metric"] > 0).all()
    assert frame["recon_rmse"].notna().all() and frame["n_obs"].eq(12).all()
    assert frame["baseline_metric"].nunique() == 1 and (frame["baseline_metric"] > 0).all()
    assert rnn["nfe_forward"].isna().all() and (ode["nfe_forward"] > 0).all() and (ode["nfe_backward"] > 0).all()
    for artifacts in frame["artifacts"]:
        paths = json.loads(artifacts)
        assert any(p.endswith("-spirals.png") for p in paths)
    # same numpy weights, data and noise: the two frameworks start from the same loss
    for model in ("latent-ode", "rnn"):
        rows = frame[frame["model"] == model]
        assert rows["initial_loss"].max() == pytest.approx(rows["initial_loss"].min(), rel=1e-4)


def _problem(framework, model, **opts):
    options = LatentSpiralOptions(**{"n_train": 40, "n_test": 20, "batch_size": 40, "window": 40, "n_extrap": 30,
                                     "n_obs": 12, **opts})
    return REG.task("latent-spiral").build(framework, options, model=model, seed=1, device="cpu", dtype="float64")


@pytest.mark.parametrize("model,solve,rel", [
    ("rnn", None, 1e-12),
    ("latent-ode", dict(solver="rk4", options={"step_size": 0.05}), 1e-12),
    ("latent-ode", dict(solver="dopri5", tol=1e-7), 1e-5),
])
def test_initial_loss_is_equal_across_frameworks(model, solve, rel):
    pytest.importorskip("jax")
    losses = {}
    for framework in ("torch", "jax"):
        problem = _problem(framework, model)
        odeint = None
        if solve:
            tol = solve.get("tol", 1e-3)
            odeint = BoundOdeint(REG.backend(f"{framework}-adjoint"), solve["solver"], tol, tol, solve.get("options"),
                                 odebench.SolveStats())
        loss = problem.loss(problem.batch(0), odeint)
        losses[framework] = float(loss.detach() if framework == "torch" else loss)
    assert losses["torch"] == pytest.approx(losses["jax"], rel=rel)


@pytest.mark.parametrize("model", ["latent-ode", "rnn"])
def test_a_short_run_lowers_the_loss(model):
    problem = _problem("torch", model, lr=0.02)
    odeint = BoundOdeint(REG.backend("torch-backprop"), "dopri5", 1e-3, 1e-3, None, odebench.SolveStats())
    trainer = REG.runtime("torch").trainer(problem, odeint if model == "latent-ode" else None, "cpu")
    losses = [trainer.step(i).loss for i in range(60)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), losses


def test_dense_output_keeps_forward_nfe_flat_in_the_observation_count():
    """The latent ODE is solved at every grid point of the window, each spiral's observations
    being rows of it: 30 or 100 observations cost the same forward evaluations; stepping onto
    every output time would cost far more."""
    counts = {}
    for n_obs, step in ((30, None), (100, None), (100, True)):
        problem = _problem("torch", "latent-ode", window=100, n_obs=n_obs)
        stats = odebench.SolveStats()
        odeint = BoundOdeint(REG.backend("torch-backprop"), "dopri5", 1e-3, 1e-3, {"step_to_outputs": step}, stats)
        with torch.no_grad():
            problem.loss(problem.batch(0), odeint)
        counts[(n_obs, step)] = stats.nfe_forward
    assert counts[(100, None)] <= 1.3 * counts[(30, None)]
    assert counts[(100, True)] > 3 * counts[(100, None)]


def test_paper_options_are_valid_and_the_trivial_forecast_is_the_baseline():
    paper = LatentSpiralOptions(**PAPER_OPTIONS)
    assert (paper.n_train, paper.batch_size, paper.iterations, paper.window) == (1000, 1000, 2000, 200)
    problem = _problem("torch", "rnn")
    test = problem.data.test
    held = np.repeat(test.x_obs[:, -1:], test.n_extrap, axis=1)
    expected = np.sqrt(np.mean((held - test.truth[:, test.window:]) ** 2))
    assert problem.extras()["baseline_metric"] == pytest.approx(expected)


@pytest.mark.parametrize("opts,needle", [
    (["--opt", "n_obs=150"], "n_obs=150 must be between 2 and the window's 100 grid points"),
    (["--opt", "noise=-0.1"], "noise must be a non-negative"),
    (["--opt", "window=400"], "need 3 * window + n_extrap"),
    (["--opt", "batch_size=5000"], "batch_size (5000) must not exceed n_train (300)"),
])
def test_bad_options_are_one_line_exit_2(tmp_path, opts, needle):
    result = CliRunner().invoke(main, ["run", "--task", "latent-spiral", *opts, "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and needle in line, line
    assert not list(tmp_path.glob("*.parquet"))
