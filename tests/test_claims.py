"""The paper-claims verdicts follow from the figures by their stated rules, and the claims
block of results/README.md is rewritten between its markers (odebench.claims)."""

from __future__ import annotations

import shutil

import pandas as pd

from odebench import claims
from odebench.results import read_results

from .conftest import ROOT


def _cnf_rows(adjoint_peak_growth: float) -> pd.DataFrame:
    rows = []
    for k, tol in enumerate([1e-3, 1e-5, 1e-7]):
        nfe = 20 * (k + 1)
        for backend, peak in (("torch-adjoint", 2e6 * adjoint_peak_growth ** (k / 2)), ("torch-backprop", 1e7 * (k + 1))):
            rows.append(dict(backend=backend, rtol=tol, nfe_forward=nfe, nfe_backward=nfe // 2,
                             peak_memory_bytes=peak, held_for_backward_bytes=peak / 2, time_forward_s=0.01 * (k + 1),
                             time_backward_s=0.01 * (k + 1), metric=3.0))
    return claims._nfe(pd.DataFrame(rows))


def test_memory_verdict_follows_its_rule(tmp_path):
    for growth, verdict in ((1.0, "**holds**"), (1.5, "**does not hold here**")):
        text = "\n".join(claims.memory_claim(_cnf_rows(growth), tmp_path).markdown())
        assert verdict in text and (tmp_path / "claims-memory.png").stat().st_size > 0
        assert "3.0× while its peak grows" in text  # NFE 60 / 20


def test_a_sweep_whose_nfe_barely_grow_is_not_judged(tmp_path):
    rows = _cnf_rows(1.0)
    rows = claims._nfe(rows[rows["rtol"] > 1e-6].assign(nfe_forward=lambda f: f["nfe_forward"].clip(upper=30)))
    text = claims.memory_claim(rows, tmp_path).text
    assert text.startswith("**cannot be judged from this sweep**") and "from tol 1e-3 to 1e-5" in text


def test_readme_block_is_replaced_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{claims.START}\nold\n{claims.END}\n\nafter\n")
    claims.write_block(readme, "new")
    text = readme.read_text()
    assert "old" not in text and "new" in text and text.startswith("intro") and text.rstrip().endswith("after")


REFERENCE = ROOT / "results" / "reference"


def _reference_copy(tmp_path, names=None):
    """The reference result files (not their figures) copied into tmp_path, so figures drawn
    from them land there and never over the committed ones."""
    for path in sorted(REFERENCE.glob("*.parquet")):
        if names is None or path.stem in names:
            shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_readme_claims_block_is_what_the_reference_runs_give(tmp_path):
    """results/README.md's claims section cannot drift from the committed runs and this code."""
    readme = (ROOT / "results" / "README.md").read_text()
    committed = readme[readme.index(claims.START) + len(claims.START):readme.index(claims.END)]
    assert f"\n{claims.claims_markdown(_reference_copy(tmp_path))}\n" == committed
    assert sorted(p.name for p in tmp_path.glob("*.png")) == \
        ["claims-dial.png", "claims-memory.png", "claims-nfe.png", "claims-peers.png"]


def test_each_claim_finds_its_rows_by_what_they_are(tmp_path):
    def titles(*names):
        frame = read_results([REFERENCE / f"{name}.parquet" for name in names])
        return [c.title.split(" ")[0] for c in claims.claims(frame, tmp_path)]

    assert titles("claims-cnf") == ["(a)", "(b)", "(c)", "(d)"]
    assert titles("table1") == ["(e)"] and titles("table1-rknet") == []
    assert titles("table2-n30", "table2-n50") == ["(e)"]
    assert titles("cnf-peers") == ["(a)", "(b)", "(c)", "(d)", "(f)"]  # its torch backends at two tolerances


def test_the_longest_cnf_sweep_is_the_one_judged(tmp_path):
    frame = read_results([REFERENCE / "cnf-peers.parquet", REFERENCE / "claims-cnf.parquet"])
    chosen = claims.select_inputs(frame).cnf
    assert set(chosen["run_id"]) == {"claims-cnf"} and chosen["rtol"].nunique() == 5
    assert set(claims.select_inputs(frame).peers["run_id"]) == {"cnf-peers"}
