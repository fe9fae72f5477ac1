"""`odebench run` progress when stderr is not a terminal: one plain line per finished cell."""

import re
import sys

import pytest
from click.testing import CliRunner

from odebench.cli import _progress_mode, main

pytest.importorskip("torch")

CNF = ["run", "--task", "cnf", "--backend", "torch-backprop", "--tol", "1e-3,1e-5", "--steps", "2",
       "--opt", "n_train=256", "--opt", "n_test=64", "--opt", "batch_size=32", "--opt", "hidden=8",
       "--opt", "layers=1"]
LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+): (ok|failed|diverged) in (\d+\.\d) s(?: \((.+)\))?$")


@pytest.fixture(autouse=True)
def no_override(monkeypatch):
    monkeypatch.delenv("ODEBENCH_PROGRESS", raising=False)


def invoke(args, expect=0, env=None):
    result = CliRunner(env=env).invoke(main, args)  # its stderr is no terminal
    assert result.exit_code == expect, result.output
    return result


def progress_lines(text):
    return [m.groups() for m in map(LINE.match, text.splitlines()) if m]


def test_one_plain_line_per_cell_without_a_terminal(tmp_path):
    result = invoke(CNF + ["--out", str(tmp_path), "--run-id", "lines"])
    for text in (result.stdout, result.stderr):
        assert "\r" not in text and "\x1b" not in text
    lines = progress_lines(result.stderr)
    assert [(i, n) for i, n, *_ in lines] == [("1", "2"), ("2", "2")]
    labels = [label for _, _, label, *_ in lines]
    assert sorted(labels) == ["cnf cnf torch-backprop dopri5 rtol=0.001 atol=0.001 seed=0",
                              "cnf cnf torch-backprop dopri5 rtol=1e-05 atol=1e-05 seed=0"]
    for _, _, _, status, seconds, extra in lines:
        assert status == "ok" and float(seconds) > 0
        assert re.fullmatch(r"metric -?\d+\.\d{4}", extra)
    assert not progress_lines(result.stdout)  # the table stays on stdout, progress on stderr


def test_quiet_prints_no_progress(tmp_path):
    result = invoke(CNF + ["--out", str(tmp_path), "--run-id", "quiet", "--quiet"])
    assert not progress_lines(result.output) and not result.stderr.strip()


def test_failed_cell_line_names_the_error(tmp_path, decay_plugin):
    result = invoke(["run", "-p", decay_plugin, "--task", "decay", "--backend", "torch-backprop", "--tol", "1e-12,1e-3",
                     "--solver-opt", "max_steps=15", "--opt", "n_times=3", "--steps", "2", "--out", str(tmp_path)],
                    expect=1)  # the 1e-12 cell failed
    statuses = {label.split(" rtol=")[1].split()[0]: (status, extra) for _, _, label, status, _, extra in
                progress_lines(result.stderr)}
    assert statuses["1e-12"][0] == "failed" and "MaxStepsError" in statuses["1e-12"][1]
    assert statuses["0.001"][0] == "ok" and statuses["0.001"][1].startswith("metric ")


def test_environment_override(tmp_path, decay_plugin):
    args = ["run", "-p", decay_plugin, "--task", "decay", "--backend", "torch-backprop", "--tol", "1e-3",
            "--steps", "2", "--out", str(tmp_path)]
    assert not invoke(args, env={"ODEBENCH_PROGRESS": "none"}).stderr.strip()
    bad = invoke(args, expect=2, env={"ODEBENCH_PROGRESS": "fancy"})
    assert "ODEBENCH_PROGRESS" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_terminal_keeps_the_bars(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert _progress_mode(quiet=False) == "bars" and _progress_mode(quiet=True) == "none"
    monkeypatch.setenv("ODEBENCH_PROGRESS", "lines")
    assert _progress_mode(quiet=False) == "lines"
