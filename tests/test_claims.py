"""The paper-claims verdicts follow from the figures by their stated rules, and the claims
block of results/README.md is rewritten between its markers (odebench.claims)."""

from __future__ import annotations

import pandas as pd

from odebench import claims


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
        text = "\n".join(claims.memory_claim(_cnf_rows(growth), tmp_path))
        assert verdict in text and (tmp_path / "claims-memory.png").stat().st_size > 0
        assert "3.0× while its peak grows" in text  # NFE 60 / 20


def test_readme_block_is_replaced_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{claims.START}\nold\n{claims.END}\n\nafter\n")
    claims.write_block(readme, "new")
    text = readme.read_text()
    assert "old" not in text and "new" in text and text.startswith("intro") and text.rstrip().endswith("after")
