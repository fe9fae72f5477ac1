"""`odebench compare BASE NEW`: matching by identity, ratios, worst first, exit codes 0/1/2."""

import os

import pandas as pd
import pytest
from click.testing import CliRunner

from odebench.cli import main
from odebench.compare import parse_threshold
from odebench.errors import InvalidInputError
from odebench.results import normalise

ROW = dict(
    run_id="r", timestamp="2026-12-01T10:00:00+00:00", task="cnf", model="cnf", backend="torch-adjoint",
    framework="torch", solver="dopri5", rtol=1e-5, atol=1e-5, seed=0, steps=10, batch_size=64, device="cpu",
    dtype="float32", status="ok", metric_name="test_nll_nats", metric=3.0, metric_higher_is_better=False,
    nfe_forward=50.0, nfe_backward=30.0, time_forward_s=0.05, time_backward_s=0.05,
    peak_memory_bytes=2_000_000, memory_kind="torch_cpu_peak_allocated", held_for_backward_bytes=6000.0,
)
BACKENDS = ("torch-adjoint", "torch-backprop", "torch-adjoint-seminorm")


def rows(**changes):
    """One ok row per backend; ``changes`` maps a backend to the columns that differ."""
    return [dict(ROW, backend=b, **changes.get(b, {})) for b in BACKENDS]


def write(path, records, drop=()):
    frame = normalise(pd.DataFrame(records)).drop(columns=list(drop))
    if str(path).endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return str(path)


def compare(base, new, *extra, expect):
    result = CliRunner().invoke(main, ["compare", base, new, *extra])
    assert result.exit_code == expect, result.output
    return result.output


def table(output):
    """The table's body: the lines of matched cells, in order, split into fields."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("task "))
    body = []
    for line in lines[start + 1:]:
        if line.startswith(("only in", "note:")) or "cells compared" in line:
            break
        body.append(line.split())
    return body


def summary(output):
    return output.strip().splitlines()[-1]


def test_identical_runs_exit_0(tmp_path):
    base = write(tmp_path / "base.parquet", rows())
    out = compare(base, base, expect=0)
    assert summary(out) == "3 cells compared, 0 worse than 10%, 0 ok in BASE but not in NEW, 0 only ok in BASE, 0 only ok in NEW"
    body = table(out)
    assert len(body) == 3 and all(fields[-6:] == ["1.00x"] * 6 for fields in body)


def test_runs_on_other_machines_get_a_note(tmp_path):
    base = write(tmp_path / "base.parquet", rows())
    same = write(tmp_path / "same.csv", rows())  # gpu None in parquet, NaN in csv: the same machine
    assert "note:" not in compare(base, same, expect=0)
    other = write(tmp_path / "other.parquet", [dict(r, cpu="another cpu") for r in rows()])
    assert "note: BASE and NEW ran on different machines" in compare(base, other, expect=0)


def test_cell_with_nothing_to_compare_comes_last(tmp_path):
    empty = {"time_forward_s": None, "nfe_forward": 0.0, "nfe_backward": 0.0, "peak_memory_bytes": None,
             "held_for_backward_bytes": None, "metric": None}
    base = write(tmp_path / "base.parquet", rows(**{"torch-adjoint": empty}))
    new = write(tmp_path / "new.parquet", rows(**{"torch-adjoint": empty}))
    last = table(compare(base, new, expect=0))[-1]
    assert last[2] == "torch-adjoint" and last[-6:] == ["-"] * 6


def test_slower_cell_fails_and_comes_first(tmp_path):
    base = write(tmp_path / "base.parquet", rows())
    slow = {"time_forward_s": 0.065, "time_backward_s": 0.065}  # 30 % slower
    new = write(tmp_path / "new.csv", rows(**{"torch-backprop": slow}))  # parquet against csv
    out = compare(base, new, expect=1)
    first = table(out)[0]
    assert first[2] == "torch-backprop" and first[-6] == "1.30x!"
    assert all("!" not in f for fields in table(out)[1:] for f in fields)
    assert summary(out) == "3 cells compared, 1 worse than 10%, 0 ok in BASE but not in NEW, 0 only ok in BASE, 0 only ok in NEW"
    assert "worse than 50%" in summary(compare(base, new, "--threshold", "50%", expect=0))
    compare(base, new, "--threshold", "29", expect=1)
    compare(base, new, "--threshold", "31", expect=0)


def test_better_figures_and_skipped_zero_nfe_do_not_fail(tmp_path):
    base = write(tmp_path / "base.parquet", rows(**{"torch-backprop": {"nfe_backward": 0.0}}))
    faster = {"time_forward_s": 0.01, "nfe_forward": 20.0, "peak_memory_bytes": 1000}
    new = write(tmp_path / "new.parquet", rows(**{"torch-adjoint": faster, "torch-backprop": {"nfe_backward": 0.0}}))
    out = compare(base, new, expect=0)
    by_backend = {fields[2]: fields for fields in table(out)}
    assert by_backend["torch-adjoint"][-6:-3] == ["0.60x", "0.40x", "1.00x"]
    assert by_backend["torch-backprop"][-4] == "-"  # NFE-b 0 on both sides: skipped


@pytest.mark.parametrize("higher_is_better, new_metric, expect, shown", [
    (False, 3.6, 1, "1.20x!"),   # an NLL that rose 20 %
    (False, 2.4, 0, "0.80x"),    # an NLL that fell: better
    (True, 2.4, 1, "0.80x!"),    # an accuracy that fell 20 %
    (True, 3.6, 0, "1.20x"),     # an accuracy that rose: better
])
def test_metric_direction(tmp_path, higher_is_better, new_metric, expect, shown):
    base = write(tmp_path / "base.parquet", [dict(ROW, metric_higher_is_better=higher_is_better)])
    new = write(tmp_path / "new.parquet", [dict(ROW, metric=new_metric, metric_higher_is_better=higher_is_better)])
    out = compare(base, new, expect=expect)
    assert table(out)[0][-1] == shown


def test_negative_metric_ratio_keeps_its_direction(tmp_path):
    base = write(tmp_path / "base.parquet", [dict(ROW, metric=-2.0)])
    new = write(tmp_path / "new.parquet", [dict(ROW, metric=-1.0)])  # the NLL rose by half of |BASE|
    assert table(compare(base, new, expect=1))[0][-1] == "1.50x!"


def test_cells_match_on_identity_only_in_one_is_listed(tmp_path):
    base = write(tmp_path / "base.parquet", rows() + [dict(ROW, seed=1, status="ok")])
    new_rows = [dict(r, seed=1) if r["backend"] == "torch-backprop" else r for r in rows()]
    new_rows += [dict(ROW, seed=1, status="failed", error="boom")]
    new = write(tmp_path / "new.parquet", new_rows)
    out = compare(base, new, expect=1)  # a cell ok in BASE failed in NEW: a regression
    assert {fields[2] for fields in table(out)} == {"torch-adjoint", "torch-adjoint-seminorm"}
    assert "only in BASE: task=cnf model=cnf backend=torch-backprop solver=dopri5 rtol=1e-05 atol=1e-05 " \
           "seed=0 dtype=float32 device=cpu" in out
    assert "backend=torch-adjoint solver=dopri5 rtol=1e-05 atol=1e-05 seed=1 dtype=float32 device=cpu " \
           "(NEW: failed)" in out
    assert "only in NEW: task=cnf model=cnf backend=torch-backprop" in out and "seed=1" in out
    assert summary(out) == "2 cells compared, 0 worse than 10%, 1 ok in BASE but not in NEW, 2 only ok in BASE, 1 only ok in NEW"


def test_last_row_by_timestamp_counts(tmp_path):
    base = write(tmp_path / "base.parquet", [ROW])
    later = dict(ROW, timestamp="2026-12-01T11:00:00+00:00", time_forward_s=0.1)  # 50 % slower
    new = write(tmp_path / "new.parquet", [later, ROW])  # file order says ROW is last; time says otherwise
    assert table(compare(base, new, expect=1))[0][-6] == "1.50x!"


def test_old_file_without_model_column_matches(tmp_path):
    old = write(tmp_path / "old.parquet", rows(), drop=["model", "held_for_backward_bytes"])
    new = write(tmp_path / "new.parquet", rows())
    for args in ((old, new), (new, old), (old, old)):
        out = compare(*args, expect=0)
        assert summary(out) == "3 cells compared, 0 worse than 10%, 0 ok in BASE but not in NEW, 0 only ok in BASE, 0 only ok in NEW"
    assert table(compare(old, new, expect=0))[0][-2] == "-"  # held bytes missing in the old file: skipped


def test_memory_of_different_kinds_is_not_compared(tmp_path):
    base = write(tmp_path / "base.parquet", [dict(ROW, memory_kind="torch_saved_activations")])
    new = write(tmp_path / "new.parquet", [dict(ROW, peak_memory_bytes=9_000_000)])
    assert table(compare(base, new, expect=0))[0][-3:-1] == ["-", "-"]


def one_line_error(args, needle):
    result = CliRunner().invoke(main, ["compare", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("odebench: error: "), result.output
    assert needle in lines[0], lines[0]


def test_bad_files_are_one_line_exit_2(tmp_path):
    good = write(tmp_path / "good.parquet", rows())
    (tmp_path / "random.parquet").write_bytes(os.urandom(512))
    (tmp_path / "empty.parquet").write_bytes(b"")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    no_rows = write(tmp_path / "no-rows.parquet", [ROW])
    pd.read_parquet(no_rows).iloc[:0].to_parquet(no_rows, index=False)
    failed = write(tmp_path / "failed.parquet", [dict(ROW, status="failed")])
    elsewhere = write(tmp_path / "elsewhere.parquet", [dict(r, task="mnist") for r in rows()])
    cases = [
        ([str(tmp_path / "missing.parquet"), good], "result file not found: "),
        ([good, str(tmp_path / "random.parquet")], "random.parquet as a result file (parquet or csv): "),
        ([str(tmp_path / "empty.parquet"), good], "empty.parquet as a result file"),
        ([good, str(tmp_path / "empty.csv")], "empty.csv as a result file (parquet or csv): No columns"),
        ([good, str(tmp_path / "other.csv")], "other.csv is not an odebench result file: no values in column(s) "
                                              "task, backend, status"),
        ([good, no_rows], "no-rows.parquet has no rows"),
        ([failed, good], "BASE has no cell with status ok (failed 1)"),
        ([good, elsewhere], "BASE and NEW have no cell in common; cells match on task, model, backend"),
    ]
    for args, needle in cases:
        one_line_error(args, needle)


@pytest.mark.parametrize("threshold", ["-5%", "ten", "", "nan", "inf%", "5%%"])
def test_bad_threshold_is_one_line_exit_2(tmp_path, threshold):
    good = write(tmp_path / "good.parquet", rows())
    one_line_error([good, good, "--threshold", threshold], "is not allowed; give a percentage >= 0 written N% or N")


@pytest.mark.parametrize("text, value", [("10%", 0.10), ("10", 0.10), (" 2.5 % ", 0.025), ("0", 0.0), ("0.5", 0.005)])
def test_threshold_forms(text, value):
    assert parse_threshold(text) == pytest.approx(value)


def test_threshold_error_names_what_is_allowed():
    with pytest.raises(InvalidInputError, match=r"^--threshold '-1' is not allowed; give a percentage >= 0"):
        parse_threshold("-1")

