"""The committed pages of the reference runs (docs/reference-results/) are what the code renders
from results/reference/, and every image and link on them resolves offline."""

from __future__ import annotations

import re
import struct

from odebench.claims import claims
from odebench.html_report import PAGE, write_html
from odebench.reference_pages import INDEX, index_markdown
from odebench.results import read_results

from .conftest import ROOT
from .page_links import PNG, broken

REFERENCE = ROOT / "results" / "reference"
PAGES = ROOT / "docs" / "reference-results"
AGAIN = "re-render them with `make reference-pages` and commit the result"


def _png_size(path) -> tuple:
    data = path.read_bytes()
    assert data.startswith(PNG), path
    return struct.unpack(">II", data[16:24])


def test_a_reference_page_equals_a_fresh_rendering(tmp_path):
    """The page's text byte for byte, the run's own figures byte for byte, and the figures drawn
    here (work-precision, claims) as PNGs of the same size: their pixels follow matplotlib's
    version, which is not this code's to pin."""
    committed = PAGES / "table2-n30"
    fresh = write_html([REFERENCE / "table2-n30.parquet"], tmp_path).parent
    assert (fresh / PAGE).read_text() == (committed / PAGE).read_text(), AGAIN
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in committed.iterdir()), AGAIN
    for name in names:
        if (REFERENCE / name).exists():
            assert (fresh / name).read_bytes() == (REFERENCE / name).read_bytes()
        if name.endswith(".png"):
            assert _png_size(fresh / name) == _png_size(committed / name), (name, AGAIN)


def test_the_index_lists_every_run_and_the_claims_of_all(tmp_path):
    paths = sorted(REFERENCE.glob("*.parquet"))
    expected = index_markdown(paths, claims(read_results(paths), tmp_path))
    assert (PAGES / INDEX).read_text() == expected, AGAIN
    assert sorted(p.name for p in PAGES.iterdir() if p.is_dir()) == sorted(p.stem for p in paths), AGAIN


def test_every_page_and_the_index_resolve_offline():
    pages = sorted(PAGES.glob(f"*/{PAGE}"))
    assert len(pages) == len(list(REFERENCE.glob("*.parquet")))
    for page in pages:
        assert broken(page) == [], page
    index = (PAGES / INDEX).read_text()
    targets = re.findall(r"\]\(([^)]+)\)", index)
    assert len(targets) == len(pages) + 4  # a link per run, four claims figures
    for target in targets:
        assert not re.match(r"[a-z]+:", target) and (PAGES / target).is_file(), target
