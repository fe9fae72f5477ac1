"""The benchmark suites are importable and valid (asv check), their problem module gives exact
figures, and the paper-claims verdicts follow from the figures by their stated rules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import paper_claims

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("asv") is None and not (Path(sys.executable).parent / "asv").exists(),
                    reason="asv is not installed")
def test_asv_suites_pass_asv_check():
    asv = shutil.which("asv") or str(Path(sys.executable).parent / "asv")
    done = subprocess.run([asv, "check", "-E", "existing"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "No problems found" in done.stdout, done.stdout + done.stderr


def test_mlp_figures_are_exact_counts_and_memory():
    pytest.importorskip("torch")
    from benchmarks.problems import mlp_cell_figures

    adjoint = mlp_cell_figures("torch-adjoint", "dopri5", 1e-5)
    backprop = mlp_cell_figures("torch-backprop", "dopri5", 1e-5)
    assert adjoint["nfe_forward"] == backprop["nfe_forward"] > 0 and backprop["nfe_backward"] == 0
    assert adjoint["held_for_backward_bytes"] * 50 < backprop["held_for_backward_bytes"]


def _cnf_rows(adjoint_peak_growth: float) -> pd.DataFrame:
    rows = []
    for k, tol in enumerate([1e-3, 1e-5, 1e-7]):
        nfe = 20 * (k + 1)
        for backend, peak in (("torch-adjoint", 2e6 * adjoint_peak_growth ** (k / 2)), ("torch-backprop", 1e7 * (k + 1))):
            rows.append(dict(backend=backend, rtol=tol, nfe_forward=nfe, nfe_backward=nfe // 2,
                             peak_memory_bytes=peak, held_for_backward_bytes=peak / 2, time_forward_s=0.01 * (k + 1),
                             time_backward_s=0.01 * (k + 1), metric=3.0))
    return paper_claims._nfe(pd.DataFrame(rows))


@pytest.mark.parametrize("growth, verdict", [(1.0, "**holds**"), (1.5, "**does not hold here**")])
def test_memory_verdict_follows_its_rule(tmp_path, growth, verdict):
    text = "\n".join(paper_claims.memory_claim(_cnf_rows(growth), tmp_path))
    assert verdict in text and (tmp_path / "claims-memory.png").stat().st_size > 0
    assert "3.0× while its peak grows" in text  # NFE 60 / 20


def test_readme_block_is_replaced_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{paper_claims.START}\nold\n{paper_claims.END}\n\nafter\n")
    paper_claims.write_block(readme, "new")
    text = readme.read_text()
    assert "old" not in text and "new" in text and text.startswith("intro") and text.rstrip().endswith("after")
