"""The ``mnist`` task (the paper's Table 1): offline digits by default, the models axis (ResNet
once per framework), equal initial loss across frameworks, RK-Net, data problems found before
any cell runs, the test-time tolerance sweep, and ResNet memory growing with its depth."""

import json
import urllib.request

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

import odebench  # noqa: E402
from odebench.cli import main  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench_tasks.mnist import data as mnist_data  # noqa: E402
from odebench_tasks.mnist.options import PAPER_OPTIONS, MNISTOptions  # noqa: E402
from odebench_tasks.mnist.params import n_params  # noqa: E402
from odebench_tasks.mnist.task import MNISTData  # noqa: E402

SMALL = ["--opt", "width=8", "--opt", "n_blocks=2", "--opt", "batch_size=32"]


def run_cli(args, expect=0):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to reach the network fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_table1_grid_on_digits_offline(tmp_path, offline):
    pytest.importorskip("jax")
    run_cli(["run", "--task", "mnist", "--model", "odenet,resnet", "--backend", "torch-adjoint,jax-adjoint",
             "--steps", "3", *SMALL, "--out", str(tmp_path), "--run-id", "t1", "--quiet"])
    frame = pd.read_parquet(tmp_path / "t1.parquet")
    assert set(frame["status"]) == {"ok"}, frame["error"].tolist()
    ode, base = frame[frame["model"] == "odenet"], frame[frame["model"] == "resnet"]
    assert sorted(ode["backend"]) == ["jax-adjoint", "torch-adjoint"]  # torch-backprop: the RK-Net test
    assert sorted(base["backend"]) == ["jax", "torch"]  # once per framework, not per backend
    assert (ode["n_params"] == n_params("odenet", 8)).all() and (base["n_params"] == n_params("resnet", 8, 2)).all()
    assert set(ode["rtol"]) == {1e-3}  # the task's default tolerance (the paper's)
    assert frame["metric_name"].eq("test_error_pct").all() and frame["baseline_metric"].eq(90.0).all()
    assert np.allclose(frame["accuracy_pct"], 100.0 - frame["metric"])
    assert frame["metric"].between(0, 100).all() and (frame["n_test"] == 359).all()
    assert json.loads(frame["task_options"].iloc[0])["dataset"] == "digits"
    assert base["nfe_forward"].isna().all() and (ode["nfe_forward"] > 0).all()
    for r in ode.to_dict("records"):  # the trained ODE-Net, evaluated at five tolerances
        sweep = json.loads(r["eval_tolerances"])
        assert [e["rtol"] for e in sweep] == [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]
        assert all(0 <= e["metric"] <= 100 and e["time_s"] > 0 for e in sweep)
        assert sweep[-1]["nfe"] > sweep[0]["nfe"]  # tighter costs more evaluations
        assert any(a.endswith("-nfe.png") for a in json.loads(r["artifacts"]))
    assert base["eval_tolerances"].isna().all()
    plot = tmp_path / "t1.png"
    run_cli(["report", str(tmp_path / "t1.parquet"), "--plot", str(plot)])
    assert plot.stat().st_size > 20_000


def test_rk_net_is_backprop_through_fixed_step_rk4(tmp_path):
    run_cli(["run", "--task", "mnist", "--backend", "torch-backprop", "--solver", "rk4", "--solver-opt", "step_size=0.25",
             "--tol", "1e-1,1e-3", "--steps", "2", *SMALL, "--out", str(tmp_path), "--run-id", "rk", "--quiet"])
    frame = pd.read_parquet(tmp_path / "rk.parquet")
    assert len(frame) == 1  # a fixed-step solver has no tolerance to vary: one cell
    row = frame.iloc[0]
    assert row["status"] == "ok" and row["solver"] == "rk4" and pd.isna(row["rtol"]) and pd.isna(row["atol"])
    assert row["nfe_forward"] == 4 * 4 and row["nfe_backward"] == 0  # 4 steps of 4 stages, autograd backward
    assert pd.isna(row["eval_tolerances"])  # nothing to sweep


def test_a_short_run_lowers_the_loss():
    options = MNISTOptions(width=16, n_blocks=2, batch_size=64, iterations=100, lr=0.1)
    problem = make_registry().task("mnist").build("torch", options, model="odenet", seed=0, device="cpu",
                                                 dtype="float32")
    backend = odebench.backend("torch-adjoint")
    odeint = odebench.protocols.BoundOdeint(backend, "dopri5", 1e-3, 1e-3, None, odebench.SolveStats())
    trainer = make_registry().runtime("torch").trainer(problem, odeint, "cpu")
    losses = [trainer.step(i).loss for i in range(options.iterations)]
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:10]), losses  # measured: 2.32 -> 1.6
    assert trainer.evaluate(odeint) < 50.0  # chance is 90; measured: 16


@pytest.mark.parametrize("model,solve,rel", [
    ("resnet", None, 1e-12),
    ("odenet", dict(solver="rk4", options={"step_size": 0.25}), 1e-12),
    ("odenet", dict(solver="dopri5", rtol=1e-7, atol=1e-7), 1e-5),
])
def test_initial_loss_is_equal_across_frameworks(model, solve, rel):
    """Same numpy weights, the same batch: torch and JAX start from the same loss (float64)."""
    pytest.importorskip("jax")
    reg = make_registry()
    spec = reg.task("mnist")
    options = MNISTOptions(width=8, n_blocks=2, batch_size=16)
    losses = {}
    for framework in ("torch", "jax"):
        problem = spec.build(framework, options, model=model, seed=3, device="cpu", dtype="float64")
        odeint = None
        if solve:
            bound = reg.backend(f"{framework}-adjoint")
            odeint = odebench.protocols.BoundOdeint(bound, solve["solver"], solve.get("rtol", 1e-3),
                                                    solve.get("atol", 1e-3), solve.get("options"), odebench.SolveStats())
        loss = problem.loss(problem.batch(0), odeint)
        losses[framework] = float(loss.detach() if framework == "torch" else loss)
    assert losses["torch"] == pytest.approx(losses["jax"], rel=rel)
    assert 1.5 < losses["torch"] < 3.5  # about log(10) for an untrained classifier


def test_batches_are_seeded_epochs_and_paper_options_are_valid():
    data = MNISTData(MNISTOptions(batch_size=100, augment=True), seed=1)
    first_epoch = np.concatenate([data.batch(i)[1] for i in range(data.steps_per_epoch)])
    assert data.steps_per_epoch == 1438 // 100 and len(first_epoch) == 1400
    again = MNISTData(MNISTOptions(batch_size=100, augment=True), seed=1)
    x0, y0 = data.batch(5)
    x1, y1 = again.batch(5)
    assert x0.shape == (100, 1, 28, 28) and np.array_equal(x0, x1) and np.array_equal(y0, y1)
    assert not np.array_equal(data.batch(5)[0], MNISTData(MNISTOptions(batch_size=100), seed=1).batch(5)[0])  # crops
    paper = MNISTOptions(**PAPER_OPTIONS)
    assert paper.decay_epochs() == [60, 100, 140] and paper.iterations == 160 * 468
    name, kwargs = MNISTData(MNISTOptions(batch_size=128, lr_decay_epochs="2,3"), seed=0).optimizer()
    assert name == "sgd" and kwargs["milestones"] == [2 * 11, 3 * 11] and kwargs["gamma"] == 0.1


@pytest.mark.parametrize("opts,needle", [
    (["--opt", "dataset=cifar"], "dataset must be one of digits, mnist"),
    (["--opt", "dataset=mnist", "--opt", "data_dir=/nonexistent/mnist"], "/nonexistent/mnist"),
    (["--opt", "lr_decay_epochs=10,5"], "lr_decay_epochs must be increasing"),
    (["--opt", "batch_size=5000"], "batch_size 5000 exceeds the 1438 training images"),
    (["--model", "mlp"], "unknown model(s) mlp for task 'mnist'; its models: odenet, resnet"),
])
def test_bad_options_and_data_stop_before_any_cell(tmp_path, opts, needle):
    result = CliRunner().invoke(main, ["run", "--task", "mnist", *opts, "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith("odebench: error: ") and needle in line, line
    assert not list(tmp_path.glob("*.parquet"))


def test_mnist_missing_and_offline_names_the_files_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ODEBENCH_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(mnist_data, "MIRRORS", ("file:///nonexistent/mirror/",))
    result = CliRunner().invoke(main, ["run", "--task", "mnist", "--opt", "dataset=mnist", "--out", str(tmp_path),
                                       "--quiet"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "train-images-idx3-ubyte.gz" in line and str(tmp_path / "cache" / "mnist") in line
    assert "data_dir" in line  # how to provide them


def test_resnet_memory_grows_with_its_depth():
    """O(L) memory of the ResNet baseline: peak and held bytes grow with the number of blocks."""
    reg = make_registry()
    figures = {}
    for blocks in (2, 6, 12):
        options = MNISTOptions(width=16, n_blocks=blocks, batch_size=32)
        problem = reg.task("mnist").build("torch", options, model="resnet", seed=0, device="cpu", dtype="float32")
        result = reg.runtime("torch").trainer(problem, None, "cpu").step(0, probe_memory=True)
        figures[blocks] = (result.peak_memory_bytes, result.held_for_backward_bytes)
    for k in (0, 1):
        assert figures[2][k] < figures[6][k] < figures[12][k], figures
    per_block = (figures[12][1] - figures[6][1]) / 6  # each block holds its activations for backward
    assert per_block == pytest.approx((figures[6][1] - figures[2][1]) / 4, rel=0.05)
    assert per_block >= 4 * 32 * 16 * 6 * 6 * 4  # at least four feature maps of the batch per block


def test_lr_milestones_are_torchs_multisteplr_in_both_frameworks():
    pytest.importorskip("optax")
    from odebench_jax import learning_rate

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [3, 5], 0.1)
    torch_lrs = []
    for _ in range(8):
        torch_lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    jax_schedule = learning_rate(0.1, [3, 5], 0.1)
    assert torch_lrs == pytest.approx([float(jax_schedule(k)) for k in range(8)], rel=1e-6)
    assert torch_lrs[2] == pytest.approx(0.1) and torch_lrs[3] == pytest.approx(0.01)


def test_eval_tol_option(tmp_path):
    run_cli(["run", "--task", "mnist", "--steps", "1", *SMALL, "--eval-tol", "1e-2,1e-6", "--out", str(tmp_path),
             "--run-id", "e", "--quiet"])
    sweep = json.loads(pd.read_parquet(tmp_path / "e.parquet").iloc[0]["eval_tolerances"])
    assert [(e["rtol"], e["atol"]) for e in sweep] == [(1e-2, 1e-2), (1e-6, 1e-6)]
    run_cli(["run", "--task", "mnist", "--steps", "1", *SMALL, "--eval-tol", "none", "--out", str(tmp_path),
             "--run-id", "n", "--quiet"])
    assert pd.isna(pd.read_parquet(tmp_path / "n.parquet").iloc[0]["eval_tolerances"])
    bad = CliRunner().invoke(main, ["run", "--task", "mnist", "--eval-tol", "0", "--out", str(tmp_path), "--quiet"])
    assert bad.exit_code == 2 and "rtol must be a positive finite number, got '0'" in bad.output
