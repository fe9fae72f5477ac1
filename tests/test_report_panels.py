"""`odebench report --plot`: one memory axis per memory kind, nothing clipped, old files still plot."""

import json

import pandas as pd
import pytest
from matplotlib.text import Text

from odebench.report import work_precision_figure, work_precision_plot
from odebench.results import REQUIRED_COLUMNS, normalise

pytest.importorskip("matplotlib")

KINDS = {"torch": "torch_cpu_peak_allocated", "jax": "xla_temp_bytes"}


def _row(backend, rtol, seed=0, solver="dopri5", model="cnf", **extra):
    """A valid result row of the cnf task, made up (no training), with figures that vary by cell."""
    framework = backend.split("-")[0]
    row = dict.fromkeys(REQUIRED_COLUMNS)
    row.update(run_id="t", task="cnf", model=model, backend=backend, framework=framework, solver=solver,
               rtol=rtol, atol=rtol, seed=seed, status="ok", metric_name="test_nll_nats",
               metric=3.0 + (rtol or 0) * 1e3 + seed * 0.01, nfe_forward=20.0 / (rtol or 1e-2) ** 0.2, nfe_backward=10.0,
               time_forward_s=0.01, time_backward_s=0.02, peak_memory_bytes=2**20 * (5 if framework == "torch" else 2),
               memory_kind=KINDS[framework], held_for_backward_bytes=2**19)
    row.update(extra)
    return row


def _frame(rows):
    return normalise(pd.DataFrame(rows))


def _two_kinds():
    rows = [_row(b, tol, seed) for b in ("torch-adjoint", "jax-adjoint") for tol in (1e-3, 1e-5) for seed in (0, 1)]
    rows.append(_row("torch", None, solver=None, model="resnet"))  # a model without an ODE
    sweep = [{"rtol": r, "atol": r, "metric": 3.1, "nfe": 30 + i} for i, r in enumerate((1e-1, 1e-3))]
    rows.append(_row("torch-adjoint", 1e-3, seed=2, eval_tolerances=json.dumps(sweep)))
    return _frame(rows)


def _memory_axes(fig):
    return [ax for ax in fig.axes if ax.get_label().startswith("memory:")]


def _inside(ext, box) -> bool:
    return ext.x0 >= box.x0 - 0.5 and ext.y0 >= box.y0 - 0.5 and ext.x1 <= box.x1 + 0.5 and ext.y1 <= box.y1 + 0.5


def _assert_nothing_clipped(fig):
    """Every title, axis label, legend and annotation text inside the figure, one by one; tick
    labels through each axes' tight bbox (a tick label outside the view exists but is not drawn)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks() for t in (tick.label1, tick.label2)}
    texts = [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and t.get_text().strip()]
    assert len(texts) > 10
    for text in texts:
        ext = text.get_window_extent(renderer)
        assert _inside(ext, fig.bbox), f"{text.get_text()!r} at {ext} outside {fig.bbox}"
    for ax in fig.axes:
        assert _inside(ax.get_tightbbox(renderer), fig.bbox), ax.get_label()


def test_one_memory_axis_per_kind_and_nothing_clipped(tmp_path):
    fig = work_precision_figure(_two_kinds(), title="two frameworks")
    memory = _memory_axes(fig)
    assert len(memory) == 2
    assert sorted(ax.get_label() for ax in memory) == sorted(f"memory:{k}" for k in KINDS.values())
    for ax in memory:
        kind = ax.get_label().split(":", 1)[1]
        assert kind in ax.get_title() and ax.get_ylabel() == "peak MiB"
        assert ax.get_lines(), kind  # each kind's lines on its own axis
    torch_ax = next(ax for ax in memory if "torch" in ax.get_label())
    labels = [line.get_label() for line in torch_ax.get_lines()]
    assert not any("jax" in label for label in labels) and any("no ODE" in label for label in labels)
    assert {ax.get_label() for ax in fig.axes} >= {"time", "nfe", "dial"}
    _assert_nothing_clipped(fig)
    path = work_precision_plot(_two_kinds(), tmp_path / "p.png")
    assert path.stat().st_size > 0


def test_one_kind_gives_one_memory_axis():
    fig = work_precision_figure(_frame([_row("torch-backprop", t) for t in (1e-3, 1e-5)]))
    assert [ax.get_label() for ax in _memory_axes(fig)] == ["memory:torch_cpu_peak_allocated"]
    assert len(fig.axes) == 4
    _assert_nothing_clipped(fig)


def test_old_file_without_memory_values_still_plots(tmp_path):
    rows = [_row("torch-backprop", t, peak_memory_bytes=None, memory_kind=None) for t in (1e-3, 1e-5)]
    pd.DataFrame(rows).to_parquet(tmp_path / "old.parquet", index=False)
    from odebench.results import read_results

    fig = work_precision_figure(read_results([tmp_path / "old.parquet"]))
    (memory,) = _memory_axes(fig)
    assert not memory.get_lines() and "no memory" in memory.get_title()
    _assert_nothing_clipped(fig)


def test_tasks_with_different_kind_counts_share_one_figure():
    rows = list(_two_kinds().to_dict("records")) + [dict(_row("torch-backprop", 1e-3), task="other")]
    fig = work_precision_figure(_frame(rows))
    assert len(_memory_axes(fig)) == 3
    assert len([ax for ax in fig.axes if ax.get_label()]) == 5 + 4  # the dial's twin axis unlabelled
    _assert_nothing_clipped(fig)
