"""`odebench report RUN.parquet --html OUT/`: a run as a web page that opens offline.

``OUT/index.html`` holds, per result file, a section with the summary table grouped as the
terminal shows it (``odebench.report.table_groups``), the work-precision figure of
``report --plot`` and the figures the run wrote (its ``artifacts`` column); then the paper's
claims that the rows can judge (``odebench.claims``, over all the files given, so a page of
every reference run gives the verdicts of results/README.md); then a footer per run with the
machine, library versions, commit and dates recorded in the rows.  Several files make one page
with a section each.

Self-contained: every figure is a PNG written into ``OUT/`` and linked by its bare name, and
the page has no scripts, fonts or style sheets from elsewhere, so the folder can be moved or
opened without a network.  Nothing on the page comes from the time of rendering: re-rendering
the same files gives the same page.  Every string from a result file is escaped.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from .errors import InvalidInputError
from .report import table_groups, work_precision_plot
from .results import check_writable_dir, is_missing, read_result_file, result_files

PAGE = "index.html"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; }
td { white-space: nowrap; }
footer td, #claims td { white-space: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
figure { margin: 0 0 1em; }
#claims img { max-width: 900px; }
figcaption, .note, footer { font-size: 0.85em; color: #555; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""
TEXT_COLUMNS = 3  # model, backend, solver: as in the terminal table


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def inline(text: str) -> str:
    """A claim's paragraph (inline markdown: ``**bold**`` and ```code```) as HTML, escaped first."""
    out = _e(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _table(header, rows, align=None, cell=_e) -> list[str]:
    """An HTML table; ``cell`` turns a cell's text into HTML (escaped; claims: inline markdown)."""
    align = align or "l" * TEXT_COLUMNS + "r" * (len(header) - TEXT_COLUMNS)
    lines = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = "".join(f'<td class="num">{cell(c)}</td>' if a == "r" else f"<td>{cell(c)}</td>"
                        for c, a in zip(row, align))
        lines.append(f"<tr>{cells}</tr>")
    return lines + ["</table>"]


def _figure(name: str, caption: str) -> list[str]:
    return [f'<figure><img src="{_e(name)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>']


# --------------------------------------------------------------------------- figures


def _artifact_paths(frame) -> list[str]:
    paths = []
    for raw in frame.get("artifacts", []):
        if not is_missing(raw):
            paths += [p for p in json.loads(raw) if str(p).endswith(".png")]
    return list(dict.fromkeys(paths))


def _copy_artifacts(frame, source: Path, out: Path) -> tuple[list[str], list[str]]:
    """The run's PNGs copied into ``out``: found where the row says, else beside the result file
    (a committed run whose folder moved).  Returns (names copied, paths not found)."""
    copied, missing = [], []
    for recorded in _artifact_paths(frame):
        found = next((p for p in (Path(recorded), source.parent / Path(recorded).name) if p.is_file()), None)
        if found is None:
            missing.append(recorded)
            continue
        shutil.copyfile(found, out / found.name)
        copied.append(found.name)
    return copied, missing


def _run_section(frame, source: Path, out: Path, anchor: str) -> list[str]:
    run_ids = ", ".join(sorted({str(r) for r in frame["run_id"].dropna()})) or source.stem
    lines = [f'<section id="{_e(anchor)}">', f"<h2>{_e(run_ids)} <small>({_e(source.name)})</small></h2>"]
    ok = int((frame["status"] == "ok").sum())
    lines.append(f'<p class="note">{len(frame)} cells, {ok} ok.</p>')
    for group in table_groups(frame):
        lines.append(f"<h3>{_e(group.heading())}</h3>")
        lines += _table(group.header, group.rows)
        if group.notes:
            lines += ["<ul>", *(f"<li>{_e(n)}</li>" for n in group.notes), "</ul>"]
    if ok:
        plot = f"{anchor}-work-precision.png"
        work_precision_plot(frame, out / plot, title=run_ids)
        lines += ["<h3>Work-precision</h3>", *_figure(plot, f"{run_ids}: metric against time, NFE and memory")]
    copied, missing = _copy_artifacts(frame, source, out)
    if copied or missing:
        lines.append("<h3>The run's figures</h3>")
    for name in copied:
        lines += _figure(name, name)
    if missing:  # e.g. a committed run whose figures were not committed with it
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        lines.append(f'<p class="note">{len(missing)} figure(s) that the rows name are not on disk, neither where '
                     f"recorded nor beside {_e(source.name)}: {_e(Path(missing[0]).name)}{more}.</p>")
    return lines + ["</section>"]


# --------------------------------------------------------------------------- claims and footer


def _claims_section(frame, out: Path) -> list[str]:
    from .claims import claims

    found = claims(frame, out)
    if not found:
        return []
    lines = ['<section id="claims">', "<h2>The paper's claims, judged from these rows</h2>"]
    for claim in found:
        lines += [f"<h3>{_e(claim.title)}</h3>", f"<p>{inline(claim.text)}</p>"]
        if claim.table is not None:
            lines += _table(claim.table.header, claim.table.rows, claim.table.align, cell=inline)
        if claim.figure is not None:
            lines += _figure(claim.figure[1], claim.figure[0])
    return lines + ["</section>"]


def _values(frame, column: str) -> str:
    if column not in frame:
        return "-"
    found = sorted({str(v) for v in frame[column] if not is_missing(v)})
    return ", ".join(found) or "-"


def _versions(frame) -> str:
    parts = [f"{name} {_values(frame, f'{name}_version')}" for name in ("odebench", "python", "numpy", "torch", "jax")]
    libraries = {}
    for raw in frame.get("backend_library_versions", []):
        if not is_missing(raw):
            libraries.update({k: v for k, v in json.loads(raw).items() if v})
    parts += [f"{k} {v}" for k, v in sorted(libraries.items())]
    return "; ".join(p for p in parts if not p.endswith(" -"))


def _footer(runs: list) -> list[str]:
    """Machine, versions, commit and dates of each run, from its rows' provenance columns."""
    header = ("run", "date (UTC, first and last cell)", "commit", "machine", "device", "versions")
    rows = []
    for frame, _ in runs:
        stamps = sorted(str(t) for t in frame["timestamp"].dropna())
        when = f"{stamps[0]} … {stamps[-1]}" if stamps else "-"
        machine = _values(frame, "cpu") + ("" if _values(frame, "gpu") == "-" else f"; {_values(frame, 'gpu')}")
        commits = ", ".join(c[:12] for c in _values(frame, "git_commit").split(", "))
        rows.append((_values(frame, "run_id"), when, commits, machine, _values(frame, "device"), _versions(frame)))
    return ["<footer>", "<h2>Where and when these were measured</h2>",
            *_table(header, rows, "l" * len(header)),
            "<p>Taken from the result rows' provenance columns (versions, git_commit, cpu, gpu, timestamp); "
            "made by <code>odebench report --html</code>.</p>", "</footer>"]


# --------------------------------------------------------------------------- the page


def check_target(out_dir) -> Path:
    """``--html OUT`` names a folder (made if needed), never an existing file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--html {out}: is an existing file; give a folder for the page and its figures")
    return out


def write_html(paths, out_dir) -> Path:
    """Render the result files ``paths`` (a folder: its parquet files) into ``out_dir/index.html``
    with its figures beside it; bad input is a one-line InvalidInputError before anything is written."""
    import pandas as pd

    out = check_target(out_dir)
    runs = [(read_result_file(path), Path(path)) for path in result_files(paths)]
    check_writable_dir(out, "--html")
    anchors = _anchors([source for _, source in runs])
    title = "odebench results: " + ", ".join(_values(frame, "run_id") for frame, _ in runs)
    body = [f"<h1>{_e(title)}</h1>"]
    if len(runs) > 1:
        body += ["<ul>", *(f'<li><a href="#{_e(a)}">{_e(s.name)}</a></li>' for (_, s), a in zip(runs, anchors)), "</ul>"]
    for (frame, source), anchor in zip(runs, anchors):
        body += _run_section(frame, source, out, anchor)
    body += _claims_section(pd.concat([frame for frame, _ in runs], ignore_index=True), out)
    body += _footer(runs)
    page = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{_e(title)}</title>",
            f"<style>{STYLE}</style>", "</head>", "<body>", *body, "</body>", "</html>", ""]
    path = out / PAGE
    path.write_text("\n".join(page), encoding="utf-8")
    return path


def _anchors(sources: list) -> list[str]:
    """One id per result file, from its name (letters, digits, ``-``, ``_``), made unique."""
    seen, anchors = set(), []
    for source in sources:
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", source.stem).strip("-") or "run"
        anchor, k = base, 2
        while anchor in seen or anchor == "claims":
            anchor, k = f"{base}-{k}", k + 1
        seen.add(anchor)
        anchors.append(anchor)
    return anchors
