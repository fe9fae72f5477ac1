"""Tables and work-precision plots from any number of result files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

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


def _missing(value) -> bool:
    """None or NaN (a column a row does not have, e.g. the tolerance of a ResNet row)."""
    import pandas as pd

    try:
        return value is None or (not isinstance(value, str) and bool(pd.isna(value)))
    except (TypeError, ValueError):
        return False


def _cell(value, col: str, fmt: str) -> str:
    if _missing(value):
        return "-"
    if col in MS:
        value = float(value) * 1e3
    elif col in MIB:
        value = float(value) / 2**20
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def format_table(frame) -> str:
    """Rows grouped by task and framework (one memory kind per group), one line per cell: a
    task's ODE models and its baselines (backend = the framework) side by side."""
    lines = []
    frame = frame.copy()
    frame["framework"] = frame["framework"].fillna(frame["backend"])
    for (task, framework), group in frame.groupby(["task", "framework"], sort=True, dropna=False):
        metric_name = group["metric_name"].dropna().iloc[0] if group["metric_name"].notna().any() else "metric"
        kinds = sorted(group["memory_kind"].dropna().unique())
        lines.append(f"\n== task {task} | {framework} | metric: {metric_name} | memory: {', '.join(kinds) or '-'}")
        header = [h for _, h, _ in SUMMARY]
        order = [c for c in ("model", "backend", "solver", "rtol", "atol", "seed") if c in group]
        records = group.sort_values(order, na_position="last").to_dict("records")
        body = [[_cell(r.get(c), c, f) for c, _, f in SUMMARY] for r in records]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
        lines.append(_line(header, widths))
        lines += [_line(b, widths) for b in body]
        for r in records:
            if r["status"] != "ok":
                where = " ".join(str(r.get(c)) for c in ("model", "backend", "solver") if not _missing(r.get(c)))
                tol = "" if _missing(r.get("rtol")) else f" rtol={r['rtol']:g}"
                lines.append(f"   ! {where}{tol}: {r['status']}: {str(r.get('error'))[:200]}")
    return "\n".join(lines)


def print_table(frame) -> None:
    click.echo(format_table(frame))


def work_precision_plot(frame, path, title: Optional[str] = None) -> Path:
    """Three panels per task: metric vs time, metric vs NFE, peak memory vs NFE.

    One line per (backend, solver) across the tolerances, averaged over seeds; failed cells
    are left out (they have no metric).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = frame[frame["status"] == "ok"].copy()
    if ok.empty:
        from .errors import InvalidInputError

        raise InvalidInputError("no cell with status ok to plot")
    ok["nfe_total"] = ok["nfe_forward"].astype(float) + ok["nfe_backward"].astype(float)
    ok["time_iter_s"] = ok["time_forward_s"].astype(float) + ok["time_backward_s"].astype(float)
    tasks = sorted(ok["task"].unique())
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 4.2 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        sub = ok[ok["task"] == task]
        metric_name = sub["metric_name"].iloc[0]
        for (backend, solver), g in sub.groupby(["backend", "solver"]):
            g = g.groupby(["rtol", "atol"], as_index=False).mean(numeric_only=True).sort_values("rtol", ascending=False)
            label = f"{backend} / {solver}"
            axes[row, 0].plot(g["time_iter_s"] * 1e3, g["metric"], "o-", label=label)
            axes[row, 1].plot(g["nfe_total"], g["metric"], "o-", label=label)
            axes[row, 2].plot(g["nfe_total"], g["peak_memory_bytes"].astype(float) / 2**20, "o-", label=label)
            for _, r in g.iterrows():
                axes[row, 1].annotate(f"{r['rtol']:.0e}", (r["nfe_total"], r["metric"]), fontsize=7, alpha=0.7)
        kinds = ", ".join(sorted(sub["memory_kind"].dropna().unique()))
        axes[row, 0].set(xlabel="time per iteration, fwd+bwd (ms, median)", ylabel=metric_name, title=f"{task}: {metric_name} vs time")
        axes[row, 1].set(xlabel="NFE per iteration (forward + backward)", ylabel=metric_name, title=f"{task}: {metric_name} vs NFE")
        axes[row, 2].set(xlabel="NFE per iteration (forward + backward)", ylabel=f"peak memory (MiB; {kinds})", title=f"{task}: memory vs NFE")
        for ax in axes[row]:
            ax.set_xscale("log")
            ax.grid(True, alpha=0.3)
        axes[row, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
