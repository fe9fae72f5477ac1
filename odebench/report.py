"""Tables and work-precision plots from any number of result files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

from .results import is_missing

# The summary table: (column in the results, header, format)
SUMMARY = [
    ("model", "model", "{}"),
    ("backend", "backend", "{}"),
    ("solver", "solver", "{}"),
    ("rtol", "rtol", "{:.0e}"),
    ("atol", "atol", "{:.0e}"),
    ("seed", "seed", "{}"),
    ("status", "status", "{}"),
    ("metric", "metric", "{:.4f}"),
    ("baseline_metric", "baseline", "{:.4f}"),
    ("train_loss", "loss", "{:.4f}"),
    ("nfe_forward", "NFE-f", "{:.1f}"),
    ("nfe_backward", "NFE-b", "{:.1f}"),
    ("time_forward_s", "fwd ms", "{:.1f}"),
    ("time_backward_s", "bwd ms", "{:.1f}"),
    ("time_total_s", "total s", "{:.1f}"),
    ("n_params", "params", "{:,.0f}"),
    ("peak_memory_bytes", "peak MiB", "{:.2f}"),
    ("held_for_backward_bytes", "held MiB", "{:.2f}"),
]
MS = {"time_forward_s", "time_backward_s"}
MIB = {"peak_memory_bytes", "held_for_backward_bytes"}


TEXT_COLUMNS = 3  # model, backend, solver: left-aligned; the numbers right-aligned


def _line(values, widths) -> str:
    return "  ".join(v.ljust(w) if i < TEXT_COLUMNS else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))


def _cell(value, col: str, fmt: str) -> str:
    if is_missing(value):
        return "-"
    if col in MS:
        value = float(value) * 1e3
    elif col in MIB:
        value = float(value) / 2**20
    elif col == "metric" and isinstance(value, float) and 0 < abs(value) < 1e-3:
        return f"{value:.2e}"  # an error of 1e-9 (detest) is not 0.0000
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


@dataclass(frozen=True)
class TableGroup:
    """One group of the summary table: a task's rows on one framework (one memory kind), each
    cell already formatted as the terminal shows it, and one note per cell that did not finish ok.
    The terminal table and the HTML page both draw these, so they cannot disagree."""

    task: str
    framework: str
    metric_name: str
    memory_kinds: tuple
    header: tuple
    rows: tuple  # of tuples of formatted cells, in SUMMARY's order
    notes: tuple  # "<model backend solver> rtol=...: <status>: <error>"

    def heading(self) -> str:
        return (f"task {self.task} | {self.framework} | metric: {self.metric_name} | "
                f"memory: {', '.join(self.memory_kinds) or '-'}")


def table_groups(frame) -> list[TableGroup]:
    """Rows grouped by task and framework (one memory kind per group), one line per cell: a
    task's ODE models and its baselines (backend = the framework) side by side."""
    frame = frame.copy()
    frame["framework"] = frame["framework"].fillna(frame["backend"])
    groups = []
    for (task, framework), group in frame.groupby(["task", "framework"], sort=True, dropna=False):
        metric_name = group["metric_name"].dropna().iloc[0] if group["metric_name"].notna().any() else "metric"
        order = [c for c in ("model", "backend", "solver", "rtol", "atol", "seed") if c in group]
        records = group.sort_values(order, na_position="last").to_dict("records")
        notes = []
        for r in records:
            if r["status"] != "ok":
                where = " ".join(str(r.get(c)) for c in ("model", "backend", "solver") if not is_missing(r.get(c)))
                tol = "" if is_missing(r.get("rtol")) else f" rtol={r['rtol']:g}"
                notes.append(f"{where}{tol}: {r['status']}: {str(r.get('error'))[:200]}")
        groups.append(TableGroup(
            task=task, framework=framework, metric_name=metric_name,
            memory_kinds=tuple(sorted(group["memory_kind"].dropna().unique())),
            header=tuple(h for _, h, _ in SUMMARY),
            rows=tuple(tuple(_cell(r.get(c), c, f) for c, _, f in SUMMARY) for r in records),
            notes=tuple(notes)))
    return groups


def format_table(frame) -> str:
    """The summary table as text: per group a heading line, aligned columns, then a ``!`` line
    per cell that did not finish ok."""
    lines = []
    for group in table_groups(frame):
        lines.append(f"\n== {group.heading()}")
        widths = [max(len(h), *(len(row[i]) for row in group.rows)) for i, h in enumerate(group.header)]
        lines.append(_line(group.header, widths))
        lines += [_line(row, widths) for row in group.rows]
        lines += [f"   ! {note}" for note in group.notes]
    return "\n".join(lines)


def print_table(frame) -> None:
    click.echo(format_table(frame))


def work_precision_plot(frame, path, title: Optional[str] = None) -> Path:
    """Write ``work_precision_figure`` to a PNG."""
    return _save(work_precision_figure(frame, title), path, dpi=110)


def work_precision_figure(frame, title: Optional[str] = None):
    """One row of panels per task: metric vs time per iteration, metric vs NFE, peak memory vs NFE
    once per memory kind, and the test-time dial (metric and NFE of trained ODE models against the
    evaluation tolerance, where the run swept it).

    Memory kinds get an axis each because they measure different things (a torch allocator peak,
    XLA's temp buffers) that one scale would mislead about.  One line per (model, backend, solver)
    across the training tolerances, averaged over seeds, in the same colour on every panel; models
    without an ODE are dashed horizontal lines (they have no NFE); failed cells are left out.
    The figure (constrained layout, sized to its panels) is returned for callers to inspect; its
    axes are labelled "time", "nfe", "memory:<kind>" and "dial" (``Axes.get_label``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    ok = frame[frame["status"] == "ok"].copy()
    if ok.empty:
        from .errors import InvalidInputError

        raise InvalidInputError("no cell with status ok to plot")
    ok["nfe_total"] = ok["nfe_forward"].astype(float) + ok["nfe_backward"].astype(float)
    ok["time_iter_s"] = ok["time_forward_s"].astype(float) + ok["time_backward_s"].astype(float)
    ok["peak_memory_bytes"] = pd.to_numeric(ok["peak_memory_bytes"], errors="coerce")  # None in old files
    tasks = sorted(ok["task"].unique())
    kinds = {task: _memory_kinds(ok[ok["task"] == task]) for task in tasks}
    ncols = 3 + max(len(k) for k in kinds.values())
    fig, axes = plt.subplots(len(tasks), ncols, figsize=(4.8 * ncols, 4.6 * len(tasks)), squeeze=False,
                             layout="constrained")
    for row, task in enumerate(tasks):
        used = 3 + len(kinds[task])
        for ax in axes[row, used:]:
            ax.remove()  # a task with fewer memory kinds than another
        _task_panels(list(axes[row, :used]), ok[ok["task"] == task], task, kinds[task])
    if title:
        fig.suptitle(title)
    return fig


UNRECORDED = "kind not recorded"


def _memory_kinds(sub) -> list:
    """The memory kinds of a task's rows that have a peak, or [None] (one empty panel) when none has."""
    measured = sub[sub["peak_memory_bytes"].notna()]
    return sorted(measured["memory_kind"].fillna(UNRECORDED).unique()) or [None]


def _series(sub) -> list:
    """(label, rows, has an ODE) per line of a task's panels: ODE rows averaged over seeds per
    tolerance (a fixed-step solver: one point), rows without an ODE as they are."""
    out = []
    ode = sub[sub["solver"].notna()]
    for keys, g in ode.groupby(["model", "backend", "solver"] if "model" in sub else ["backend", "solver"],
                               dropna=False):
        g = (g.groupby(["rtol", "atol"], as_index=False, dropna=False).mean(numeric_only=True)
             .sort_values("rtol", ascending=False))
        out.append((" / ".join(str(k) for k in keys if not is_missing(k)), g, True))
    for keys, g in sub[sub["solver"].isna()].groupby(["model", "backend"], dropna=False):
        out.append((f"{keys[0]} ({keys[1]}, no ODE)", g, False))
    return out


def _task_panels(axes, sub, task: str, kinds: list) -> None:
    """``axes``: time, NFE, one per memory kind, dial; a line keeps its colour on all of them."""
    from matplotlib import colormaps

    metric_name = sub["metric_name"].iloc[0]
    time_ax, nfe_ax, dial_ax = axes[0], axes[1], axes[-1]
    series = _series(sub)
    palette = [f"C{i}" for i in range(10)] if len(series) <= 10 else list(colormaps["tab20"].colors)
    colors = {label: palette[i % len(palette)] for i, (label, _, _) in enumerate(series)}
    for label, g, has_ode in series:
        color = colors[label]
        if not has_ode:
            nfe_ax.axhline(g["metric"].mean(), linestyle="--", alpha=0.8, color=color, label=label)
            time_ax.plot(g["time_iter_s"].mean() * 1e3, g["metric"].mean(), "s", color=color, label=label)
            continue
        time_ax.plot(g["time_iter_s"] * 1e3, g["metric"], "o-", color=color, label=label)
        nfe_ax.plot(g["nfe_total"], g["metric"], "o-", color=color, label=label)
        for _, r in g.iterrows():
            note = "fixed step" if is_missing(r["rtol"]) else f"{r['rtol']:.0e}"
            nfe_ax.annotate(note, (r["nfe_total"], r["metric"]), fontsize=7, alpha=0.7)
    _memory_panels(axes[2:-1], sub, task, kinds, colors)
    _dial_panel(dial_ax, sub[sub["solver"].notna()], metric_name)
    time_ax.set(xlabel="time per iteration, fwd+bwd (ms, median)", ylabel=metric_name, title=f"{task}: {metric_name} vs time")
    nfe_ax.set(xlabel="NFE per iteration (forward + backward)", ylabel=metric_name, title=f"{task}: {metric_name} vs NFE")
    for ax, name in ((time_ax, "time"), (nfe_ax, "nfe"), (dial_ax, "dial")):
        ax.set_label(name)
    log_metric = _spans_decades(sub["metric"])
    for ax in (time_ax, nfe_ax):
        ax.set_xscale("log")
        if log_metric:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)


def _spans_decades(metric) -> bool:
    """A positive metric over two decades or more (errors across tolerances, detest): a log axis."""
    values = metric.astype(float).dropna()
    return len(values) > 0 and bool((values > 0).all()) and values.max() >= 100 * values.min()


def _memory_panels(axes, sub, task: str, kinds: list, colors: dict) -> None:
    """Peak memory vs NFE, one axis per memory kind (``None``: a panel saying there is none)."""
    measured = sub[sub["peak_memory_bytes"].notna()]
    kind_of = measured["memory_kind"].fillna(UNRECORDED)
    for ax, kind in zip(axes, kinds):
        ax.set_label(f"memory:{kind or 'none'}")
        ax.set(xlabel="NFE per iteration (forward + backward)", ylabel="peak MiB",
               title=f"{task}: memory vs NFE\n{kind or 'no memory recorded'}")
        ax.grid(True, alpha=0.3)
        if kind is None:
            ax.text(0.5, 0.5, "no memory values in these results", ha="center", va="center", transform=ax.transAxes)
            continue
        for label, g, has_ode in _series(measured[kind_of == kind]):
            mib = g["peak_memory_bytes"].astype(float) / 2**20
            if has_ode:
                ax.plot(g["nfe_total"], mib, "o-", color=colors[label], label=label)
            else:
                ax.axhline(mib.mean(), linestyle="--", color=colors[label], label=label)
        ax.set_xscale("log")
        ax.legend(fontsize=7)


def _dial_panel(ax, ode, metric_name: str) -> None:
    """The trained ODE models evaluated at other tolerances: metric (solid) and NFE (dashed)."""
    import json

    twin = None
    for r in ode.to_dict("records"):
        raw = r.get("eval_tolerances")  # NaN where a file without the column joins one with it
        sweep = [] if is_missing(raw) else [e for e in json.loads(raw or "null") or [] if "metric" in e]
        if not sweep:
            continue
        twin = twin or ax.twinx()
        label = f"{r.get('model')} / {r['backend']} / {r['solver']} trained at {r['rtol']:.0e}"
        line, = ax.plot([e["rtol"] for e in sweep], [e["metric"] for e in sweep], "o-", label=label)
        twin.plot([e["rtol"] for e in sweep], [e["nfe"] for e in sweep], "x--", color=line.get_color())
    ax.set(xlabel="evaluation rtol (= atol)", ylabel=f"{metric_name} (solid)", title="test-time dial: tolerance at evaluation")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.grid(True, alpha=0.3)
    if twin is None:
        ax.text(0.5, 0.5, "no tolerance sweep in these results", ha="center", va="center", transform=ax.transAxes)
        return
    twin.set_ylabel("NFE of the test set (dashed)")
    ax.legend(fontsize=7)


def nfe_history_plot(forward, backward, path, title: str = "") -> Path:
    """Forward and backward NFE per training iteration (the paper's Figure 3d: NFE grows as the
    model trains)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(range(len(forward)), forward, label="forward NFE")
    if any(backward):
        ax.plot(range(len(backward)), backward, label="backward NFE")
    ax.set(xlabel="training iteration", ylabel="function evaluations", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=100)


def _save(fig, path, dpi: int) -> Path:
    """Write ``fig`` as a PNG (its folder made if needed) and release it."""
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:  # a figure made with constrained layout keeps it
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
