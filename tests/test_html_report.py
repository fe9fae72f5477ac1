"""`odebench report RUN.parquet --html OUT/`: the terminal's table, the run's figures, the claims
its rows can judge and a provenance footer, on a page that opens offline, escapes what it shows
and renders the same twice; bad input is one line and exit 2; `report DIR` reads only result files."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from odebench.cli import main
from odebench.report import table_groups
from odebench.results import read_result_file

from .conftest import ROOT
from .page_links import broken

REFERENCE = ROOT / "results" / "reference"
T30 = REFERENCE / "table2-n30.parquet"


def report(*args, expect=0):
    result = CliRunner().invoke(main, ["report", *map(str, args)])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def one_line_error(*args, needle):
    result = report(*args, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("odebench: error: ") and needle in lines[0], result.stderr
    return lines[0]


def test_page_of_one_run_has_its_table_figures_claims_and_footer(tmp_path):
    out = tmp_path / "page"
    assert "page: " in report(T30, "--html", out).output
    page = (out / "index.html").read_text()
    for group in table_groups(read_result_file(T30)):
        assert f"<h3>{group.heading()}</h3>" in page
        for row in group.rows:  # every formatted cell of the terminal's table, in order
            assert "".join(f'<td class="num">{c}</td>' if i >= 3 else f"<td>{c}</td>"
                           for i, c in enumerate(row)) in page
    artifacts = sorted(p.name for p in REFERENCE.glob("table2-n30-*.png"))
    assert len(artifacts) == 3 and all((out / name).read_bytes() == (REFERENCE / name).read_bytes()
                                       for name in artifacts)
    assert all(f'src="{name}"' in page for name in artifacts + ["table2-n30-work-precision.png"])
    assert "(e) Table 2: the latent ODE beats the RNN" in page and "<strong>holds</strong>" in page
    assert "00da64bbc520" in page and "2026-11-30T07:18:30+00:00" in page and "torch 2.13.0+cpu" in page
    assert broken(out / "index.html") == []


def test_rendering_twice_gives_the_same_page(tmp_path):
    first = report(T30, "--html", tmp_path / "a") and (tmp_path / "a" / "index.html").read_bytes()
    report(T30, "--html", tmp_path / "b")
    assert (tmp_path / "b" / "index.html").read_bytes() == first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in (tmp_path / "b").iterdir())


def test_every_string_from_the_rows_is_escaped(tmp_path):
    frame = pd.read_parquet(T30)
    frame.loc[0, ["model", "status", "error", "cpu"]] = ["<b>odd</b>", "failed", "<script>alert('x')</script> & co",
                                                        "<i>cpu</i>"]
    frame.loc[0, "run_id"] = 'x"><img src=y>'
    frame.to_parquet(tmp_path / "odd.parquet")
    report(tmp_path / "odd.parquet", "--html", tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    for raw in ("<script>", "<b>odd", "<i>cpu", "<img src=y>"):
        assert raw not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page and "&lt;b&gt;odd&lt;/b&gt;" in page
    assert broken(tmp_path / "out" / "index.html") == []


def test_several_files_make_one_page_with_a_section_each(tmp_path):
    report(T30, REFERENCE / "table2-n50.parquet", "--html", tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert '<a href="#table2-n30">' in page and '<section id="table2-n50">' in page
    assert "below the RNN&#x27;s at 2 of 2 observation counts" in page  # the claim judged over both runs
    assert broken(tmp_path / "index.html") == []


def test_figures_the_rows_name_but_nobody_kept_are_noted(tmp_path):
    report(REFERENCE / "table1.parquet", "--html", tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "4 figure(s) that the rows name are not on disk" in page
    assert "(e) Table 1: ODE-Net" in page and broken(tmp_path / "index.html") == []


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    one_line_error(tmp_path / "none.parquet", "--html", tmp_path / "out", needle="result file not found")
    (tmp_path / "text.parquet").write_text("not a parquet file")
    one_line_error(tmp_path / "text.parquet", "--html", tmp_path / "out", needle="cannot read")
    (tmp_path / "file").write_text("")
    one_line_error(T30, "--html", tmp_path / "file", needle="is an existing file")
    assert not (tmp_path / "out").exists()


def test_report_of_a_folder_reads_only_its_result_files(tmp_path):
    shutil.copy(T30, tmp_path)
    for png in REFERENCE.glob("table2-n30-*.png"):
        shutil.copy(png, tmp_path)
    (tmp_path / "table2-n30.grid.json").write_text("{}")
    assert "2 rows from 1 file(s)" in report(tmp_path).output
    (tmp_path / "empty").mkdir()
    one_line_error(tmp_path / "empty", needle="no result files (*.parquet)")


@pytest.mark.parametrize("name", ["table2-n30"])
def test_missing_artifact_found_beside_the_result_file(tmp_path, name):
    """A committed run whose figures moved with it: the rows name their old place."""
    frame = pd.read_parquet(REFERENCE / f"{name}.parquet")
    frame["artifacts"] = frame["artifacts"].str.replace("results/reference/", "/nowhere/", regex=False)
    shutil.copytree(REFERENCE, tmp_path / "moved", ignore=shutil.ignore_patterns("*.parquet"))
    frame.to_parquet(tmp_path / "moved" / f"{name}.parquet")
    report(tmp_path / "moved" / f"{name}.parquet", "--html", tmp_path / "out")
    assert len(list((tmp_path / "out").glob(f"{name}-latent-spiral-*.png"))) == 3
