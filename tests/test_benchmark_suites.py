"""The asv suite is importable and valid (asv check), asv imports it alone, and its MLP cell
gives exact figures.  (The paper-claims writer's tests moved with it: tests/test_claims.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("asv") is None and not (Path(sys.executable).parent / "asv").exists(),
                    reason="asv is not installed")
def test_asv_suites_pass_asv_check():
    asv = shutil.which("asv") or str(Path(sys.executable).parent / "asv")
    done = subprocess.run([asv, "check", "-E", "existing"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "No problems found" in done.stdout, done.stdout + done.stderr


def test_asv_discovers_its_suite_and_imports_nothing_beside_it(tmp_path):
    """asv imports every module under ``benchmark_dir``: pointed at the suite's own folder, its
    discovery (asv's own script, run from elsewhere, as asv runs it) finds the suite's eleven
    benchmarks and never imports the comparison scripts that import the peers."""
    asv_runner = pytest.importorskip("asv.runner")
    suite = ROOT / json.loads((ROOT / "asv.conf.json").read_text())["benchmark_dir"]
    found = tmp_path / "found.json"
    code = ("import json, runpy, sys\n"
            f"sys.argv = [{asv_runner.BENCHMARK_RUN_SCRIPT!r}, 'discover', {str(suite)!r}, {str(found)!r}]\n"
            "try:\n"
            f"    runpy.run_path({asv_runner.BENCHMARK_RUN_SCRIPT!r}, run_name='__main__')\n"
            "finally:\n"
            "    print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('benchmarks', 'asv_bench'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and found.exists(), done.stderr
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    shared = {"benchmarks", "benchmarks.problems", "benchmarks.tooling"}
    assert modules == {"asv_bench", "asv_bench.bench_mlp", "asv_bench.bench_tasks"} | shared
    names = sorted(b["name"] for b in json.loads(found.read_text()))
    assert len(names) == 11 and "bench_mlp.MLPFigures.track_nfe_forward" in names
    assert "bench_tasks.TaskTime.time_training_step" in names


def test_mlp_figures_are_exact_counts_and_memory():
    pytest.importorskip("torch")
    from benchmarks.asv_bench.bench_mlp import mlp_cell_figures

    adjoint = mlp_cell_figures("torch-adjoint", "dopri5", 1e-5)
    backprop = mlp_cell_figures("torch-backprop", "dopri5", 1e-5)
    assert adjoint["nfe_forward"] == backprop["nfe_forward"] > 0 and backprop["nfe_backward"] == 0
    assert adjoint["held_for_backward_bytes"] * 50 < backprop["held_for_backward_bytes"]
