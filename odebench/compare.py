"""`odebench compare BASE NEW`: the same cells of two runs side by side, as ratios, for CI.

Cells are matched by identity (task, model, backend, solver, rtol, atol, seed, dtype, device);
only cells with status ``ok`` are compared, the last row by timestamp where a run has several.
Each figure is shown as NEW / BASE, and a figure that got worse by more than the threshold
fails the comparison:

- time per iteration (``time_forward_s + time_backward_s``), forward and backward NFE, peak
  memory and bytes held for backward: worse means higher; a figure that is 0 or missing on
  either side is skipped, and so is memory when the two rows measured different memory kinds;
- the metric: its ratio is ``1 + (NEW - BASE) / |BASE|`` (= NEW / BASE when BASE > 0, and still
  the right direction for a negative metric such as an NLL below 0); worse means higher when
  ``metric_higher_is_better`` is False, lower when True.

"Worse by more than 10 %" is a ratio above 1.10 for a figure where higher is worse, below 0.90
for a metric where higher is better.  Framework-free: pandas only, imported inside functions.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from .errors import InvalidInputError
from .results import is_missing

IDENTITY_COLUMNS = ("task", "model", "backend", "solver", "rtol", "atol", "seed", "dtype", "device")
MODEL_AT = IDENTITY_COLUMNS.index("model")
# (figure, header); "time" is forward + backward, the metric's direction comes from its row
FIGURES = (("time", "time/it"), ("nfe_forward", "NFE-f"), ("nfe_backward", "NFE-b"),
           ("peak_memory_bytes", "peak mem"), ("held_for_backward_bytes", "held mem"), ("metric", "metric"))
MEMORY = {"peak_memory_bytes", "held_for_backward_bytes"}
THRESHOLD_FORMS = "a percentage >= 0 written N% or N (e.g. 10% or 10; 0.5 means 0.5 %)"


def parse_threshold(text: str) -> float:
    """'10%' or '10' -> 0.10: a plain number is a percentage too, so '10' never means 1000 %."""
    raw = str(text).strip()
    number = raw[:-1].strip() if raw.endswith("%") else raw
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"--threshold {raw!r} is not allowed; give {THRESHOLD_FORMS}")
    return value / 100.0


def load_run(path):
    """One result file, checked (``odebench.results.read_result_file``: unreadable or
    non-result files are a one-line InvalidInputError naming the file)."""
    from .results import read_result_file

    return read_result_file(path)


def _ident(value):
    """One identity value, comparable across parquet and csv: missing (None or NaN) -> None,
    numbers -> float (a seed read as 0.0 matches 0), anything else -> str."""
    if is_missing(value):
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return str(value)


def _latest(frame) -> dict:
    """{identity: row}, the last row by timestamp winning (ISO timestamps sort as text;
    rows without one keep file order and lose to timed ones)."""
    rows = frame.assign(_order=range(len(frame)), _ts=frame["timestamp"].astype("string"))
    rows = rows.sort_values(["_ts", "_order"], na_position="first", kind="stable")
    return {tuple(_ident(r[c]) for c in IDENTITY_COLUMNS): r for r in rows.to_dict("records")}


def _fill_models(side: dict, other: dict) -> None:
    """Rows of files written before the model column (model None) take the other run's model
    where exactly one model there has the same rest of identity, so old files still match."""
    models = defaultdict(set)
    for key in other:
        models[key[:MODEL_AT] + key[MODEL_AT + 1:]].add(key[MODEL_AT])
    for key in [k for k in side if k[MODEL_AT] is None]:
        found = models.get(key[:MODEL_AT] + key[MODEL_AT + 1:], set()) - {None}
        if len(found) == 1:
            filled = key[:MODEL_AT] + (found.pop(),) + key[MODEL_AT + 1:]
            if filled not in side:
                side[filled] = side.pop(key)


def _number(row: dict, figure: str) -> Optional[float]:
    if figure == "time":
        parts = [_number(row, "time_forward_s"), _number(row, "time_backward_s")]
        return None if None in parts else sum(parts)
    value = row.get(figure)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _higher_is_better(base: dict, new: dict) -> bool:
    """The metric's direction from NEW's row, else BASE's; lower is better where neither says."""
    for row in (new, base):
        value = row.get("metric_higher_is_better")
        if not is_missing(value):
            return str(value).strip().lower() in ("true", "1", "1.0")
    return False


def _ratio(figure: str, base: dict, new: dict) -> Optional[tuple]:
    """(ratio NEW/BASE, how much worse as a fraction of BASE: > 0 is worse), or None where the
    figure cannot be compared (missing, 0, or memory of different kinds)."""
    b, n = _number(base, figure), _number(new, figure)
    if b is None or n is None:
        return None
    if figure == "metric":
        if b == 0:
            return None
        ratio = 1 + (n - b) / abs(b)
        return ratio, (1 - ratio) if _higher_is_better(base, new) else (ratio - 1)
    if b <= 0 or n <= 0:
        return None
    if figure in MEMORY and not any(is_missing(r.get("memory_kind")) for r in (base, new)) \
            and base["memory_kind"] != new["memory_kind"]:
        return None
    return n / b, n / b - 1


@dataclass
class CellComparison:
    identity: tuple
    ratios: dict  # figure -> NEW/BASE ratio, or None where skipped
    beyond: set  # figures worse than the threshold
    worst: Optional[float]  # the largest worsening (fraction of BASE) over the figures; None: nothing compared


@dataclass
class Comparison:
    threshold: float
    cells: list  # CellComparison, worst first
    only_base: list = field(default_factory=list)  # (identity, NEW's status or None)
    only_new: list = field(default_factory=list)  # (identity, BASE's status or None)
    notes: list = field(default_factory=list)

    @property
    def worse(self) -> list:
        return [c for c in self.cells if c.beyond]

    @property
    def broken(self) -> list:
        """Cells ok in BASE that NEW ran and did not finish ok (failed, diverged): a regression too."""
        return [(key, status) for key, status in self.only_base if status is not None]

    @property
    def regressed(self) -> bool:
        return bool(self.worse or self.broken)


def compare_frames(base, new, threshold: float, base_label: str = "BASE", new_label: str = "NEW") -> Comparison:
    """Match the ok cells of two runs and rate every figure; no cell in common is bad input."""
    runs = {}
    for label, frame in ((base_label, base), (new_label, new)):
        ok = frame[frame["status"] == "ok"]
        if ok.empty:
            counts = ", ".join(f"{s} {n}" for s, n in frame["status"].fillna("-").value_counts().items())
            raise InvalidInputError(f"{label} has no cell with status ok ({counts}); only ok cells are compared")
        runs[label] = (_latest(ok), _latest(frame))
    (b_ok, b_all), (n_ok, n_all) = runs[base_label], runs[new_label]
    for side, other in ((b_ok, n_ok), (n_ok, b_ok), (b_all, n_all), (n_all, b_all)):
        _fill_models(side, other)
    common = [k for k in b_ok if k in n_ok]
    if not common:
        raise InvalidInputError(f"{base_label} and {new_label} have no cell in common; cells match on "
                                f"{', '.join(IDENTITY_COLUMNS)}")
    cells = [_rate(key, b_ok[key], n_ok[key], threshold) for key in common]
    cells.sort(key=lambda c: (math.inf if c.worst is None else -c.worst, _sort_key(c.identity)))
    only_base = sorted(b_ok.keys() - n_ok.keys(), key=_sort_key)
    only_new = sorted(n_ok.keys() - b_ok.keys(), key=_sort_key)
    return Comparison(
        threshold=threshold, cells=cells,
        only_base=[(k, _status(n_all, k)) for k in only_base],
        only_new=[(k, _status(b_all, k)) for k in only_new],
        notes=_machine_notes(base, new, base_label, new_label),
    )


def _status(rows: dict, key: tuple) -> Optional[str]:
    """The other run's status of a cell it has but did not finish ok (e.g. failed), else None."""
    status = rows[key]["status"] if key in rows else None
    return None if status == "ok" or is_missing(status) else str(status)


def _rate(key: tuple, base: dict, new: dict, threshold: float) -> CellComparison:
    ratios, beyond, worst = {}, set(), None
    for figure, _ in FIGURES:
        rated = _ratio(figure, base, new)
        ratios[figure] = None if rated is None else rated[0]
        if rated is not None:
            worst = rated[1] if worst is None else max(worst, rated[1])
            if rated[1] > threshold + 1e-12:  # 1.10 / 1.00 - 1 is 0.10000000000000009
                beyond.add(figure)
    return CellComparison(identity=key, ratios=ratios, beyond=beyond, worst=worst)


def _sort_key(identity: tuple) -> tuple:
    """Identity order for ties: numbers as numbers, missing values last."""
    return tuple((v is None, isinstance(v, str), 0 if v is None else v) for v in identity)


def _machine_notes(base, new, base_label: str, new_label: str) -> list:
    """Time and memory ratios across machines compare the machines too: say so."""
    machines = [{(_ident(cpu), _ident(gpu)) for cpu, gpu in zip(f["cpu"], f["gpu"])} for f in (base, new)]
    if machines[0] == machines[1]:
        return []
    return [f"note: {base_label} and {new_label} ran on different machines (cpu/gpu differ); "
            "time and memory ratios include the machines' difference"]


def compare_files(base_path, new_path, threshold: float) -> Comparison:
    """Load both files (each checked) and compare them."""
    return compare_frames(load_run(base_path), load_run(new_path), threshold)


def _show(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return value


def _align(rows: list, left: int) -> list:
    """Columns padded to a common width: the first ``left`` left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def format_comparison(result: Comparison, base_name: str = "BASE", new_name: str = "NEW") -> str:
    """The table (worst cell first, '!' on figures worse than the threshold), the cells only in
    one run, and the summary line."""
    pct = f"{result.threshold * 100:g}%"
    header = list(IDENTITY_COLUMNS) + [h + " " for _, h in FIGURES]  # the space: above the '!' column
    body = [[_show(v) for v in c.identity] + [
        "- " if c.ratios[f] is None else f"{c.ratios[f]:.2f}x" + ("!" if f in c.beyond else " ")
        for f, _ in FIGURES] for c in result.cells]
    lines = [f"BASE {base_name}", f"NEW  {new_name}",
             f"ratios NEW / BASE (metric: 1 + (NEW - BASE) / |BASE|); ! = worse by more than {pct}", ""]
    lines += _align([header] + body, left=4)
    for label, other, rows in (("BASE", "NEW", result.only_base), ("NEW", "BASE", result.only_new)):
        for key, status in rows:
            where = " ".join(f"{c}={_show(v)}" for c, v in zip(IDENTITY_COLUMNS, key) if v is not None)
            lines.append(f"only in {label}: {where}" + (f" ({other}: {status})" if status else ""))
    lines += result.notes
    lines.append(f"{len(result.cells)} cells compared, {len(result.worse)} worse than {pct}, "
                 f"{len(result.broken)} ok in BASE but not in NEW, "
                 f"{len(result.only_base)} only ok in BASE, {len(result.only_new)} only ok in NEW")
    return "\n".join(lines)
