"""Bad input to every command is one line on stderr and exit 2, before anything runs; `odebench run`
exits 1 when a cell did not finish ok (its row kept, a summary line on stderr), 0 when all did."""

import pandas as pd
import pytest
from click.testing import CliRunner

from odebench.cli import main
from odebench.errors import InvalidInputError

pytest.importorskip("torch")

CNF = ["run", "--task", "cnf", "--steps", "2", "--opt", "batch_size=32", "--opt", "hidden=8", "--opt", "n_test=64",
       "--backend", "torch-backprop", "--quiet"]


def one_line_error(args, needle):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("odebench: error: "), result.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    # solver options: the integrators' own check (odebench.solve.options.resolve_options), at plan time
    (["--solver-opt", "max_steps=-1"], "option max_steps must be a positive integer, got -1"),
    (["--solver-opt", "max_steps=abc"], "option max_steps must be a positive integer, got 'abc'"),
    (["--solver-opt", "max_steps=1.5"], "option max_steps must be a positive integer, got 1.5"),
    (["--solver-opt", "foo=1"], "unknown option(s) foo for adaptive solver 'dopri5'; allowed: "),
    (["--solver-opt", "safety=abc"], "option safety must be a positive number, got 'abc'"),
    (["--solver-opt", "step_to_outputs=maybe"], "option step_to_outputs must be true or false"),
    (["--solver", "rk4", "--solver-opt", "step_size=0"], "fixed-step solver 'rk4' needs options={'step_size': h} with h > 0"),
    (["--solver", "rk4", "--solver-opt", "step_size=-0.1"], "with h > 0 (got -0.1)"),
    (["--solver", "rk4", "--solver-opt", "step_size=big"], "with h > 0 (got 'big')"),
    (["--solver", "dopri5,rk4", "--solver-opt", "safety=0.8"], "unknown option(s) safety for fixed-step solver 'rk4'"),
    (["--solver-opt", "max_steps"], "must look like key=value"),
    # the other options of run
    (["--seed", "a"], "--seed: 'a' is not an integer or a range A..B"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--steps", "-1"], "--steps must be at least 1, got -1"),
    (["--steps", "x"], "Invalid value for '--steps': 'x' is not a valid integer"),
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--tol", "0"], "rtol must be a positive finite number, got '0'"),
    (["--tol", "-1"], "rtol must be a positive finite number, got '-1'"),
    (["--tol", "abc"], "rtol must be a positive finite number, got 'abc'"),
    (["--tol", "1e-3", "--rtol", "1e-3"], "give either --tol or --rtol/--atol, not both"),
    (["--rtol", "1e-3,1e-4", "--atol", "1e-3,1e-4,1e-5"], "they pair up"),
    (["--task", "nope"], "unknown task 'nope'; known tasks: "),
    (["--backend", "nope"], "unknown backend 'nope'; known backends: "),
    (["--solver", "nope"], "unknown solver 'nope'; known solvers: "),
    (["--model", "nope"], "unknown model(s) nope for task 'cnf'"),
    (["--opt", "nokey=1"], "unknown option(s) nokey for task 'cnf'"),
    (["--opt", "hidden=wide"], "task option hidden='wide' is not a valid int"),
    (["-p", "no_such_plugin_module_xyz"], "cannot import plugin 'no_such_plugin_module_xyz'"),
    (["--eval-tol", "garbage"], "rtol must be a positive finite number, got 'garbage'"),
    (["--eval-tol", "0"], "rtol must be a positive finite number, got '0'"),
    (["--device", "nonsense"], "unknown device 'nonsense'"),
    (["--dtype", "float16"], "Invalid value for '--dtype'"),
    (["--no-such-flag"], "No such option '--no-such-flag'"),
])
def test_run_bad_input(tmp_path, args, needle):
    one_line_error(CNF + ["--out", str(tmp_path), *args], needle)
    assert not list(tmp_path.glob("*.parquet"))  # nothing ran


@pytest.mark.parametrize("make,needle", [
    (lambda tmp: "/proc/odebench-x", "--out /proc/odebench-x: cannot create or write to it"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "is an existing file, not a folder"),
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "sub", "cannot create or write to it"),
])
def test_run_unwritable_output_folder(tmp_path, make, needle):
    out = make(tmp_path)
    one_line_error(CNF + ["--out", str(out)], needle)
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.fixture
def not_results(tmp_path):
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really parquet")
    (tmp_path / "empty.parquet").write_bytes(b"")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "header.csv").write_text("task,backend,status\n")
    return tmp_path


@pytest.mark.parametrize("name,needle", [
    ("corrupt.parquet", "cannot read {} as a result file (parquet or csv): "),
    ("empty.parquet", "cannot read {} as a result file (parquet or csv): "),
    ("empty.csv", "cannot read {} as a result file (parquet or csv): "),
    ("other.csv", "{} is not an odebench result file: no values in column(s) task, backend, status"),
    ("header.csv", "{} has no rows"),
    ("missing.parquet", "result file not found: {}"),
])
def test_report_and_compare_refuse_non_result_files(not_results, name, needle):
    path = str(not_results / name)
    one_line_error(["report", path], needle.format(path))
    one_line_error(["compare", path, path], needle.format(path))
    from odebench.compare import load_run
    from odebench.results import read_results

    for load in (lambda: read_results([path]), lambda: load_run(path)):  # one implementation, both doors
        with pytest.raises(InvalidInputError) as info:
            load()
        assert str(info.value).startswith(needle.format(path))


@pytest.mark.parametrize("flag,make,needle", [
    ("--plot", lambda tmp: "/proc/odebench-x/wp.png", "--plot /proc/odebench-x/wp.png: its folder"),
    ("--plot", lambda tmp: str(tmp), "is a folder; give a file name"),
    ("--csv", lambda tmp: (tmp / "file").write_text("x") and str(tmp / "file" / "all.csv"), "is an existing file"),
])
def test_report_unwritable_outputs(not_results, flag, make, needle):
    out = make(not_results)
    one_line_error(["report", str(not_results / "other.csv"), flag, out], needle)


@pytest.mark.parametrize("args,needle", [
    (["list", "-p", "no_such_plugin_module_xyz"], "cannot import plugin"),
    (["check", "nope"], "unknown backend 'nope'"),
    (["check", "torch-backprop", "--solver", "nope"], "unknown solver 'nope'"),
    (["compare", "a.parquet"], "Missing argument 'NEW'"),
    (["report"], "Missing argument 'FILES...'"),
])
def test_other_commands_bad_input(args, needle):
    one_line_error(args, needle)


def test_compare_bad_threshold(not_results):
    path = str(not_results / "other.csv")
    one_line_error(["compare", path, path, "--threshold", "abc"], "--threshold 'abc' is not allowed")


def test_failed_cell_exits_1_keeps_its_row_and_says_so(tmp_path, decay_plugin):
    # a legitimate run-time failure (not bad input): the 1e-12 cell runs out of steps, 1e-3 is ok
    result = CliRunner().invoke(main, ["run", "-p", decay_plugin, "--task", "decay", "--backend", "torch-backprop",
                                       "--tol", "1e-12,1e-3", "--solver-opt", "max_steps=15", "--opt", "n_times=3",
                                       "--steps", "2", "--out", str(tmp_path), "--run-id", "f", "--quiet"])
    assert result.exit_code == 1, (result.output, result.exception)
    frame = pd.read_parquet(tmp_path / "f.parquet").set_index("rtol")
    assert frame.loc[1e-12, "status"] == "failed" and "MaxStepsError" in frame.loc[1e-12, "error"]
    assert frame.loc[1e-3, "status"] == "ok"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("odebench: 1 of 2 cells did not finish ok: 1 failed (first: decay decay torch-backprop "
                               "dopri5 rtol=1e-12 seed=0: MaxStepsError"), lines[0]
    assert lines[0].endswith("their rows are in the result file (error column)")


def test_all_ok_run_exits_0(tmp_path):
    result = CliRunner().invoke(main, CNF + ["--tol", "1e-3", "--out", str(tmp_path), "--run-id", "ok"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert set(pd.read_parquet(tmp_path / "ok.parquet")["status"]) == {"ok"}
    assert not result.stderr.strip()
    assert not list(tmp_path.glob(".odebench-write-probe-*"))  # the writability probe is removed
