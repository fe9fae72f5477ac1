"""The benchmark scripts run at their smallest settings, print their tables with the NFE their
pages record, keep a --help, and refuse a bad argument with one line and exit 2.
(benchmarks/executors.py runs small in tests/test_executors.py; jax_cost's and jax_fixed_cost's
tables and a Method's counts are checked in tests/test_jax_cost_table.py, their smallest run,
minutes of compiling, is not run here.)"""

from __future__ import annotations

import importlib
import json

import pytest

SCRIPTS = ["torch_vs_torchdiffeq", "jax_cost", "jax_fixed_cost", "peer_overhead", "executors"]
JAX_PROBLEMS = "the problems are mlp-normal, mlp-wide, cnf, odenet-small"


def _main(module, args, capsys):
    """(exit code, stdout, stderr) of the script's main on ``args``, in this process."""
    pytest.importorskip("torchdiffeq")
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(f"benchmarks.{module}").main(args)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.parametrize("module", SCRIPTS)
def test_help(module, capsys):
    code, out, _ = _main(module, ["--help"], capsys)
    assert code == 0 and out.startswith(f"usage: python -m benchmarks.{module}"), out


@pytest.mark.parametrize("module, args, needle", [
    ("torch_vs_torchdiffeq", ["--methods", "backprop,nope"], "unknown method(s) nope; the methods are backprop"),
    ("torch_vs_torchdiffeq", ["--problem", "mlp-normal"], "invalid choice: 'mlp-normal'"),
    ("torch_vs_torchdiffeq", ["--repeats", "0"], "--repeats: 0 is not a positive integer"),
    ("jax_cost", ["--problems", "mlp-normal,mlp"], f"--problems: unknown problem(s) mlp; {JAX_PROBLEMS}"),
    ("jax_cost", ["--processes", "0"], "--processes: 0 is not a positive integer"),
    ("jax_cost", ["--tols", "1e-3,0"], "--tols: tolerance '0' is not a positive number"),
    ("jax_cost", ["--dispatch", "eager"], "invalid choice: 'eager' (choose from 'async', 'sync')"),
    ("jax_fixed_cost", ["--problems", "nope"], f"--problems: unknown problem(s) nope; {JAX_PROBLEMS}"),
    ("jax_fixed_cost", ["--dispatch", "async,eager"], "unknown dispatch mode(s) eager; the dispatch modes are async"),
    ("jax_fixed_cost", ["--steps", "4,4"], "--steps needs two or more different positive counts, got '4,4'"),
    ("peer_overhead", ["--peers", "torchode"], "unknown peer(s) torchode; the peers are torchdiffeq-adjoint"),
    ("peer_overhead", ["--tol", "-1"], "--tol: tolerance '-1' is not a positive number"),
    ("executors", ["--sections", "writing,dusk"], "unknown section(s) dusk"),
    ("executors", ["--cells", "10"], "--cells: 10 cells: at least 100"),
])
def test_bad_argument_is_one_line_and_exit_2(module, args, needle, capsys):
    code, out, err = _main(module, args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and not out, err
    assert lines[0].startswith(f"python -m benchmarks.{module}: error: ") and needle in lines[0], lines[0]


def test_torch_vs_torchdiffeq_smallest(tmp_path, capsys):
    """mlp at 1e-3, one repeat: the table's NFE are the page's (14/14 forward, 26/26 backward with
    torchdiffeq's backward step control), and --out writes the table and its rows."""
    pytest.importorskip("torchdiffeq")
    from benchmarks import torch_vs_torchdiffeq

    out = tmp_path / "table.md"
    code = torch_vs_torchdiffeq.main(["--repeats", "1", "--warmup", "0", "--tols", "1e-3", "--methods",
                                      "backprop,adjoint", "--out", str(out)])
    assert code in (0, 1)  # 1: a time goal missed, which one repeat on a busy machine may
    text = out.read_text()
    assert "| backprop | 1e-03 |" in text and "| 14/14 | 0/0 | 1.00 |" in text and "| 14/14 | 26/26 | 1.00 |" in text
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [(r["method"], r["nfe_fwd_ob"], r["nfe_bwd_ob"], r["ob_stats_nfe"]) for r in rows] == \
        [("backprop", 14, 0, [14, 0]), ("adjoint", 14, 26, [14, 26])]
    assert "Notes:" not in text  # odebench's own counters agreed with the counting wrapper


def test_peer_overhead_smallest(capsys):
    """One torchdiffeq step through the harness and written directly: the same losses (else it
    exits), the NFE per step of the cnf task's fast default at 1e-5."""
    pytest.importorskip("torchdiffeq")
    from benchmarks import peer_overhead

    code = peer_overhead.main(["--peers", "torchdiffeq-backprop", "--repeats", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert code in (0, 1) and "| torchdiffeq-backprop | 1e-05 |" in out and "| 14 / 0 |" in out, out
