"""`odebench run --dry-run`: the whole grid checked and its cells printed, nothing run or written
(exit 0); bad input is one line and exit 2, as for a real run."""

from __future__ import annotations

from click.testing import CliRunner

from odebench.cli import main

DECAY = ["run", "-p", "odebench_decay", "--task", "decay", "--quiet"]


def invoke(args, expect):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def test_dry_run_prints_every_planned_cell_and_writes_nothing(tmp_path, decay_plugin):
    out = tmp_path / "out"
    result = invoke([*DECAY, "--backend", "torch-adjoint,torch-backprop", "--tol", "1e-3,1e-5", "--seed", "0..1",
                     "--executor", "serial", "--out", str(out), "--run-id", "plan", "--dry-run"], 0)
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("dry run: 8 cell(s) to run on executor serial") and f"{out}/plan.parquet" in lines[0]
    assert len(lines) == 9 and lines[1] == "[1/8] decay decay torch-adjoint dopri5 rtol=0.001 atol=0.001 seed=0"
    assert sum("torch-backprop" in line for line in lines) == 4 and sum("seed=1" in line for line in lines) == 4
    assert not out.exists()
    fixed = invoke([*DECAY, "--solver", "rk4", "--solver-opt", "step_size=0.1", "--tol", "1e-3,1e-5", "--dry-run",
                    "--out", str(out)], 0)
    assert "1 cell(s) to run" in fixed.output  # a fixed step has no tolerance to vary


def test_dry_run_checks_what_a_run_checks(tmp_path, decay_plugin):
    for extra, needle in ((["--backend", "nope"], "unknown backend 'nope'"),
                          (["--tol", "-1"], "rtol"),
                          (["--opt", "nope=1"], "unknown option(s) nope for task 'decay'"),
                          (["--timeout", "5", "--executor", "serial"], "--timeout needs cells in processes"),
                          (["--out", str(tmp_path / "file")], "is an existing file")):
        (tmp_path / "file").write_text("")
        result = invoke([*DECAY, *extra, "--dry-run"], 2)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("odebench: error: ") and needle in lines[0], (extra, lines)


def test_dry_run_of_a_resume_lists_only_the_cells_without_an_ok_row(tmp_path, decay_plugin):
    args = [*DECAY, "--backend", "torch-backprop", "--tol", "1e-3,1e-5", "--steps", "2", "--executor", "serial",
            "--out", str(tmp_path), "--run-id", "r"]
    invoke(args, 0)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke(["run", "--resume", "r", "--out", str(tmp_path), "--executor", "serial", "--dry-run"], 0)
    assert result.output.startswith("dry run: 0 cell(s) to run (2 already ok)")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
