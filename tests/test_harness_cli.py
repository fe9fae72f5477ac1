"""`odebench run` end to end on a tiny grid, failure isolation, interrupted runs, report, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from odebench.cli import main
from odebench.results import REQUIRED_COLUMNS, read_result_file

from .conftest import EXAMPLES, ROOT

pytest.importorskip("torch")


def run_cli(args, expect=0):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == expect, result.output
    return result


def test_grid_rows_columns_and_sane_figures(tmp_path, decay_plugin):
    run_cli(["run", "-p", decay_plugin, "--task", "decay", "--backend", "torch-adjoint,torch-backprop",
             "--tol", "1e-3,1e-7", "--steps", "4", "--out", str(tmp_path), "--run-id", "tiny", "--csv", "--quiet"])
    frame = pd.read_parquet(tmp_path / "tiny.parquet")
    assert (tmp_path / "tiny.csv").exists()
    assert list(frame.columns[: len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS
    assert len(frame) == 4 and set(frame["status"]) == {"ok"}
    assert set(frame["steps"]) == {4} and set(frame["device"]) == {"cpu"}
    bp = frame[frame["backend"] == "torch-backprop"].set_index("rtol")
    adj = frame[frame["backend"] == "torch-adjoint"].set_index("rtol")
    assert (bp["nfe_backward"] == 0).all() and (adj["nfe_backward"] > 0).all()
    for table in (bp, adj):
        assert table.loc[1e-7, "nfe_forward"] > table.loc[1e-3, "nfe_forward"]
        assert table["memory_kind"].eq("torch_cpu_peak_allocated").all()
    assert (bp["peak_memory_bytes"] > adj["peak_memory_bytes"]).all()
    assert (bp["held_for_backward_bytes"] > adj["held_for_backward_bytes"]).all()
    assert frame["probe_slowdown"].notna().all() and frame["warmup_s"].gt(0).all()
    assert frame["compile_s"].isna().all()  # eager torch compiles nothing
    assert (frame["time_forward_s"] > 0).all() and (frame["time_backward_s"] > 0).all()
    assert (frame["time_total_s"] >= frame["time_forward_s"] * 3).all()
    assert frame["n_params"].eq(1).all() and frame["metric"].notna().all()
    assert frame["python_version"].notna().all() and frame["torch_version"].notna().all()
    options = json.loads(frame["task_options"].iloc[0])
    assert options["iterations"] == 4


def test_failing_cell_is_recorded_and_run_continues(tmp_path, decay_plugin):
    run_cli(["run", "-p", decay_plugin, "--task", "decay", "--backend", "torch-backprop", "--tol", "1e-12,1e-3",
             "--solver-opt", "max_steps=15", "--opt", "n_times=3", "--steps", "2", "--out", str(tmp_path), "--run-id", "f", "--quiet"],
            expect=1)  # a cell not ok: exit 1
    frame = pd.read_parquet(tmp_path / "f.parquet").set_index("rtol")
    assert frame.loc[1e-12, "status"] == "failed"
    assert "MaxStepsError" in frame.loc[1e-12, "error"] and "max_steps=15" in frame.loc[1e-12, "error"]
    assert frame.loc[1e-3, "status"] == "ok"


NAN_TASK = """
from dataclasses import dataclass
import torch
from odebench.hookspecs import hookimpl
from odebench.specs import TaskSpec

@dataclass
class Options:
    iterations: int = 5
    nan_at: int = 2

class Problem:
    def __init__(self, options):
        self.options = options
        self.model = torch.nn.Linear(1, 1)
        self.optimizer = ("sgd", {"lr": 0.1})
    def batch(self, i):
        return i
    def loss(self, i, odeint):
        y = odeint(lambda t, y: -y * self.model.weight.sum(), torch.ones(1), torch.tensor([0.0, 1.0]))
        bad = float("nan") if i >= self.options.nan_at else 0.0
        return y[-1].sum() + bad
    def evaluate(self, odeint):
        return 0.0
    def extras(self):
        return {}
    def artifacts(self, odeint, out_dir, stem):
        return []

class Impl:
    def setup(self, options, *, seed, device, dtype):
        return Problem(options)

@hookimpl
def odebench_register_tasks(register):
    register(TaskSpec(name="nanloss", description="loss turns NaN", options=Options, frameworks={"torch": Impl}))
"""


def test_nan_loss_is_diverged(tmp_path, monkeypatch):
    (tmp_path / "nan_task_plugin.py").write_text(NAN_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    run_cli(["run", "-p", "nan_task_plugin", "--task", "nanloss", "--backend", "torch-backprop",
             "--out", str(tmp_path), "--run-id", "d", "--quiet"], expect=1)  # a diverged cell: exit 1
    row = pd.read_parquet(tmp_path / "d.parquet").iloc[0]
    assert row["status"] == "diverged" and row["error"] == "loss became nan at iteration 2"
    assert pd.isna(row["metric"])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_keeps_finished_rows(tmp_path, sig):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(EXAMPLES / "task_plugin"), os.environ.get("PYTHONPATH", "")]))
    # `python -m odebench`, except that a shell starts background jobs with SIGINT ignored and
    # Python keeps an inherited SIG_IGN: the child restores Ctrl-C's handler first, so it gets
    # KeyboardInterrupt however the suite was launched (no preexec_fn: fork in a threaded process).
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv[0] = 'odebench'; runpy.run_module('odebench', run_name='__main__')")
    cmd = [sys.executable, "-c", start, "run", "-p", "odebench_decay", "--task", "decay",
           "--backend", "torch-backprop", "--tol", "1e-3,1e-4,1e-5,1e-6,1e-7,1e-8", "--steps", "150",
           "--out", str(tmp_path), "--run-id", "k", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    path, parts = tmp_path / "k.parquet", tmp_path / "k.parts"
    deadline = time.time() + 120
    while time.time() < deadline and not list(parts.glob("*.json")):  # the first cell's row is on disk
        time.sleep(0.05)
    assert list(parts.glob("*.json")), proc.communicate()
    proc.send_signal(sig)
    proc.wait(timeout=60)
    # SIGINT: the run consolidated its fragments on the way out; SIGKILL: they are read as they lie
    assert path.exists() == (sig == signal.SIGINT) and parts.exists() == (sig == signal.SIGKILL)
    frame = read_result_file(path)
    assert 1 <= len(frame) < 6
    assert set(frame["status"]) == {"ok"}
    assert list(frame["rtol"]) == [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8][: len(frame)]


def test_report_over_two_files(tmp_path, decay_plugin):
    for run_id, backend in (("a", "torch-adjoint"), ("b", "torch-backprop")):
        run_cli(["run", "-p", decay_plugin, "--task", "decay", "--backend", backend, "--tol", "1e-3,1e-6",
                 "--steps", "3", "--out", str(tmp_path), "--run-id", run_id, "--quiet"])
    plot = tmp_path / "wp.png"
    result = run_cli(["report", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"), "--plot", str(plot),
                      "--csv", str(tmp_path / "all.csv")])
    assert "== task decay | torch | metric: abs_rate_error" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("decay ")]
    assert sorted((r[1], r[3]) for r in rows) == [("torch-adjoint", "1e-03"), ("torch-adjoint", "1e-06"),
                                                  ("torch-backprop", "1e-03"), ("torch-backprop", "1e-06")]
    assert "4 rows from 2 file(s)" in result.output
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(tmp_path / "all.csv")) == 4


@pytest.mark.parametrize("args,needle", [
    (["--task", "nope"], "unknown task 'nope'; known tasks: "),
    (["--backend", "torch-nope"], "unknown backend 'torch-nope'; known backends: "),
    (["--solver", "rk45"], "unknown solver 'rk45'; known solvers: "),
    (["--tol", "0"], "rtol must be a positive finite number, got '0'"),
    (["--tol", "-1e-3"], "rtol must be a positive finite number"),
    (["--rtol", "abc"], "rtol must be a positive finite number, got 'abc'"),
    (["--rtol", "1e-3", "--atol", "nan"], "atol must be a positive finite number, got 'nan'"),
    (["--opt", "colour=red"], "unknown option(s) colour for task 'decay'; allowed: "),
    (["--opt", "n_times=many"], "task option n_times='many' is not a valid int"),
    (["--opt", "t_end=-1"], "t_end must be > 0"),
    (["--seed", "x"], "--seed: 'x' is not an integer or a range A..B"),
    (["--rtol", "1e-3,1e-4", "--atol", "1e-3,1e-4,1e-5"], "they pair up"),
    (["--device", "cuda"], "--device cuda asked for, but torch"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, decay_plugin, args, needle):
    result = CliRunner().invoke(main, ["run", "-p", decay_plugin, "--task", "decay", "--out", str(tmp_path),
                                       "--quiet", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("odebench: error: "), result.output
    assert needle in lines[0], lines[0]
    assert not list(tmp_path.glob("*.parquet"))  # nothing ran


MODELS_TASK = """
from dataclasses import dataclass
import torch
from odebench.hookspecs import hookimpl
from odebench.specs import ModelSpec, TaskSpec

@dataclass
class Options:
    iterations: int = 3

class Rate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.ones(1))
    def forward(self, t, y):
        return -self.k * y

class Problem:
    def __init__(self, model):
        self.kind = model
        self.model = Rate()
        self.optimizer = ("sgd", {"lr": 0.1})
    def batch(self, i):
        return i
    def loss(self, i, odeint):
        if self.kind == "linear":
            assert odeint is None  # a model without an ODE gets no solver
            return (self.model.k - 0.5).pow(2).sum()
        y = odeint(self.model, torch.ones(1), torch.tensor([0.0, 1.0]))
        return (y[-1] - 0.5).pow(2).sum()
    def evaluate(self, odeint):
        return float(self.model.k)
    def extras(self):
        return {}
    def artifacts(self, odeint, out_dir, stem):
        return []

class Impl:
    def setup(self, options, *, seed, device, dtype, model):
        return Problem(model)

@hookimpl
def odebench_register_tasks(register):
    register(TaskSpec(name="twomodels", description="an ODE model and a baseline", options=Options,
                      frameworks={"torch": Impl}, default_tol=1e-4,
                      models=(ModelSpec("ode"), ModelSpec("linear", ode=False))))
"""


@pytest.fixture
def models_plugin(tmp_path, monkeypatch):
    (tmp_path / "models_task_plugin.py").write_text(MODELS_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "models_task_plugin"


def test_models_axis_baseline_runs_once_per_framework_and_seed(tmp_path, models_plugin):
    result = run_cli(["run", "-p", models_plugin, "--task", "twomodels", "--model", "ode,linear",
                      "--backend", "torch-adjoint,torch-backprop", "--tol", "1e-3,1e-5", "--seed", "0,1",
                      "--out", str(tmp_path), "--run-id", "m", "--quiet"])
    frame = pd.read_parquet(tmp_path / "m.parquet")
    assert set(frame["status"]) == {"ok"}, frame["error"].tolist()
    ode, base = frame[frame["model"] == "ode"], frame[frame["model"] == "linear"]
    assert len(ode) == 2 * 2 * 2 and len(base) == 2  # backends x tolerances x seeds; frameworks x seeds
    assert set(base["backend"]) == {"torch"} and set(base["framework"]) == {"torch"}
    assert sorted(base["seed"]) == [0, 1]
    for column in ("solver", "rtol", "atol", "nfe_forward", "nfe_backward", "steps_accepted", "solver_options"):
        assert base[column].isna().all(), column
    assert (ode["nfe_forward"] > 0).all() and set(ode["solver"]) == {"dopri5"}
    assert base["metric"].notna().all() and (frame["n_params"] == 1).all()
    # the printed table shows the baseline beside the ODE rows, in one group
    group = result.output[result.output.index("== task twomodels | torch"):]
    lines = [line.split() for line in group.splitlines()[2:12]]
    assert [line[0] for line in lines].count("linear") == 2 and [line[0] for line in lines].count("ode") == 8
    assert all(line[1:4] == ["torch", "-", "-"] for line in lines if line[0] == "linear")


def test_default_model_and_default_tolerance_come_from_the_task(tmp_path, models_plugin):
    run_cli(["run", "-p", models_plugin, "--task", "twomodels", "--backend", "torch-backprop",
             "--out", str(tmp_path), "--run-id", "d", "--quiet"])
    row = pd.read_parquet(tmp_path / "d.parquet").iloc[0]
    assert row["model"] == "ode" and row["rtol"] == row["atol"] == 1e-4


@pytest.mark.parametrize("args,needle", [
    (["--model", "resnet"], "unknown model(s) resnet for task 'twomodels'; its models: ode, linear"),
    (["--backend", "jax-adjoint"], "task 'twomodels' has no jax implementation"),
    (["--model", "linear", "--backend", "jax-adjoint"], "task 'twomodels' has no jax implementation"),
])
def test_model_errors_are_one_line_exit_2(tmp_path, models_plugin, args, needle):
    result = CliRunner().invoke(main, ["run", "-p", models_plugin, "--task", "twomodels", "--out", str(tmp_path),
                                       "--quiet", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not list(tmp_path.glob("*.parquet"))


def test_list_shows_each_tasks_models(models_plugin):
    out = json.loads(run_cli(["list", "--json", "-p", models_plugin]).output)
    (task,) = [r for r in out["items"] if r["kind"] == "task" and r["name"] == "twomodels"]
    assert [(m["name"], m["ode"]) for m in task["models"]] == [("ode", True), ("linear", False)]
    (cnf,) = [r for r in out["items"] if r["kind"] == "task" and r["name"] == "cnf"]
    assert [m["name"] for m in cnf["models"]] == ["cnf"]  # one model, named after the task
    text = run_cli(["list", "-p", models_plugin]).output
    assert "models: ode, linear (no ODE)" in text
    assert {r["name"] for r in out["items"] if r["kind"] == "runtime"} >= {"torch", "jax"}


def test_report_reads_result_files_written_before_models_and_held_bytes(tmp_path, decay_plugin):
    """Result files of earlier versions (no model, no held_for_backward_bytes, the old memory
    kind) still load, print and plot."""
    run_cli(["run", "-p", decay_plugin, "--task", "decay", "--backend", "torch-adjoint", "--tol", "1e-3,1e-5",
             "--steps", "3", "--out", str(tmp_path), "--run-id", "new", "--quiet"])
    old = pd.read_parquet(tmp_path / "new.parquet").drop(columns=["model", "held_for_backward_bytes", "warmup_s"])
    old["memory_kind"] = "torch_saved_activations"
    old.to_parquet(tmp_path / "old.parquet", index=False)
    result = run_cli(["report", str(tmp_path / "old.parquet"), "--plot", str(tmp_path / "old.png")])
    assert "memory: torch_saved_activations" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("-  ")]
    assert len(rows) == 2 and all(r[1] == "torch-adjoint" for r in rows)  # model shown as '-'
    assert (tmp_path / "old.png").stat().st_size > 10_000
