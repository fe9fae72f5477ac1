"""The committed reference runs as pages of the documentation site.

    python -m odebench.reference_pages [--results results/reference] [--out docs/reference-results]

Renders each ``<results>/<run>.parquet`` with ``odebench report --html`` into ``<out>/<run>/``
(index.html and its figures) and writes ``<out>/index.md``: one line per run linking its page,
then the paper's claims judged from all the runs together (the block results/README.md carries),
with their figures beside it.  It runs nothing: ``make reference`` reruns the runs (about 40
minutes) and then this; ``make reference-pages`` only this.  The output depends only on the
result files, so the committed pages can be checked against a fresh rendering.
"""

from __future__ import annotations

import argparse
import sys
import shutil
from pathlib import Path

from .claims import claims, tol_text
from .errors import InvalidInputError
from .html_report import PAGE, write_html
from .results import is_missing, read_result_file, read_results

INDEX = "index.md"


def _summary(frame) -> str:
    """One run in a line: tasks, cell count, backends, tolerances, date and commit."""
    tasks = ", ".join(sorted(frame["task"].dropna().unique()))
    backends = ", ".join(sorted(frame["backend"].dropna().unique()))
    tols = sorted(float(t) for t in frame["rtol"] if not is_missing(t))
    tol = "" if not tols else f"; tol {tol_text(tols[-1])}" + ("" if tols[0] == tols[-1] else f" … {tol_text(tols[0])}")
    date = min(str(t) for t in frame["timestamp"].dropna())[:10]
    commits = sorted({str(c)[:7] for c in frame["git_commit"] if not is_missing(c)})
    ok = int((frame["status"] == "ok").sum())
    solvers = ", ".join(sorted(frame["solver"].dropna().unique()))
    cells = f"{len(frame)} cell" + ("" if len(frame) == 1 else "s")
    return (f"{tasks}: {cells} ({ok} ok), {backends}" + (f"; solver {solvers}" if solvers else "") + f"{tol}; run {date}"
            + (f" at commit {', '.join(commits)}" if commits else ""))


def index_markdown(paths: list, found: list) -> str:
    """docs/reference-results/index.md: one line per run linking its page, then the claims."""
    lines = ["# Reference results", "",
             "The runs committed under `results/reference/`, each rendered by "
             "`odebench report results/reference/RUN.parquet --html docs/reference-results/RUN/` "
             "(regenerate them all with `make reference-pages`; `make reference` reruns the runs first, "
             "about 40 minutes on 2 CPU cores). How each run was made, and what it says, is in "
             "`results/README.md`.", ""]
    lines += [f"- [{path.stem}]({path.stem}/{PAGE}): {_summary(read_result_file(path))}" for path in paths]
    lines += ["", "## The paper's claims, judged from all the runs together", ""]
    for claim in found:
        lines += claim.markdown(images="")
    return "\n".join(lines)


def render(results: Path, out: Path) -> list[Path]:
    """Every run's page and the index; returns the pages and the index written."""
    paths = sorted(Path(results).glob("*.parquet"))
    if not paths:
        raise InvalidInputError(f"no result files (*.parquet) in {results}: run results/reference.sh first")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        page_dir = out / path.stem
        if page_dir.exists():  # a figure the run no longer has must not linger
            shutil.rmtree(page_dir)
        written.append(write_html([path], page_dir))
    index = out / INDEX
    index.write_text(index_markdown(paths, claims(read_results(paths), out)), encoding="utf-8")
    return written + [index]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default="results/reference", type=Path)
    ap.add_argument("--out", default="docs/reference-results", type=Path)
    args = ap.parse_args(argv)
    try:
        for path in render(args.results, args.out):
            print(path)
    except InvalidInputError as exc:
        print(f"odebench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
