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
    """Four panels per task: metric vs time per iteration, metric vs NFE, peak memory vs NFE,
    and the test-time dial (metric and NFE of trained ODE models against the evaluation
    tolerance, where the run swept it).

    One line per (model, backend, solver) across the training tolerances, averaged over seeds;
    models without an ODE are drawn as dashed horizontal lines (they have no NFE); failed
    cells are left out (they have no metric).
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
    fig, axes = plt.subplots(len(tasks), 4, figsize=(20, 4.4 * len(tasks)), squeeze=False)
    for row, task in enumerate(tasks):
        _task_panels(axes[row], ok[ok["task"] == task], task)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=110)


def _task_panels(axes, sub, task: str) -> None:
    metric_name = sub["metric_name"].iloc[0]
    model = sub["model"] if "model" in sub else None
    ode = sub[sub["solver"].notna()]
    for keys, g in ode.groupby(["model", "backend", "solver"] if model is not None else ["backend", "solver"],
                               dropna=False):
        g = (g.groupby(["rtol", "atol"], as_index=False, dropna=False).mean(numeric_only=True)
             .sort_values("rtol", ascending=False))  # a fixed-step solver: one point, no tolerance
        label = " / ".join(str(k) for k in keys if not _missing(k))
        axes[0].plot(g["time_iter_s"] * 1e3, g["metric"], "o-", label=label)
        axes[1].plot(g["nfe_total"], g["metric"], "o-", label=label)
        axes[2].plot(g["nfe_total"], g["peak_memory_bytes"].astype(float) / 2**20, "o-", label=label)
        for _, r in g.iterrows():
            note = "fixed step" if _missing(r["rtol"]) else f"{r['rtol']:.0e}"
            axes[1].annotate(note, (r["nfe_total"], r["metric"]), fontsize=7, alpha=0.7)
    for keys, g in sub[sub["solver"].isna()].groupby(["model", "backend"], dropna=False):
        label = f"{keys[0]} ({keys[1]}, no ODE)"
        line = axes[1].axhline(g["metric"].mean(), linestyle="--", alpha=0.8, label=label)
        axes[0].plot(g["time_iter_s"].mean() * 1e3, g["metric"].mean(), "s", color=line.get_color(), label=label)
        axes[2].axhline(g["peak_memory_bytes"].astype(float).mean() / 2**20, linestyle="--", color=line.get_color(),
                        label=label)
    _dial_panel(axes[3], ode, metric_name)
    kinds = ", ".join(sorted(sub["memory_kind"].dropna().unique()))
    axes[0].set(xlabel="time per iteration, fwd+bwd (ms, median)", ylabel=metric_name, title=f"{task}: {metric_name} vs time")
    axes[1].set(xlabel="NFE per iteration (forward + backward)", ylabel=metric_name, title=f"{task}: {metric_name} vs NFE")
    axes[2].set(xlabel="NFE per iteration (forward + backward)", ylabel="peak memory (MiB)",
                title=f"{task}: memory vs NFE\n({kinds})")
    for ax in axes[:3]:
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)


def _dial_panel(ax, ode, metric_name: str) -> None:
    """The trained ODE models evaluated at other tolerances: metric (solid) and NFE (dashed)."""
    import json

    twin = None
    for r in ode.to_dict("records"):
        sweep = [e for e in json.loads(r.get("eval_tolerances") or "null") or [] if "metric" in e]
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

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
