"""benchmarks/jax_cost.py and jax_fixed_cost.py: the table's ratios, their repeat-by-repeat
quartiles and the count of cells at or below diffrax, on made-up timings (no JAX needed); a
Method's counts each way out; the arguments a child process gets; the fitted line."""

from benchmarks.jax_cost import markdown, paired_spread


def _row(method, nfe_fwd, nfe_bwd, repeats):
    total = sorted(t for t, _ in repeats)[len(repeats) // 2]
    fwd = sorted(f for _, f in repeats)[len(repeats) // 2]
    return {"problem": "p", "setting": "1e-03", "method": method, "ms": total * 1e3, "fwd_ms": fwd * 1e3,
            "bwd_ms": (total - fwd) * 1e3, "nfe_fwd": nfe_fwd, "nfe_bwd": nfe_bwd,
            "us_per_fwd": fwd * 1e6 / nfe_fwd, "us_per_bwd": (total - fwd) * 1e6 / nfe_bwd, "compile_s": 1.0,
            "repeats": repeats}


def test_ratios_quartiles_and_cells():
    # odebench: half diffrax's time per evaluation, forward and backward, in every repeat
    theirs = [(0.030 + 0.001 * i, 0.010 + 0.0005 * i) for i in range(5)]
    ours = [(t / 2, f / 2) for t, f in theirs]
    slow = [(t * 2, f * 2) for t, f in theirs]
    rows = [_row("jax-adjoint", 10, 20, ours), _row("diffrax-backsolve", 10, 20, theirs),
            _row("jax-backprop", 10, 7, slow), _row("diffrax-recursive", 10, 20, theirs)]
    fwd_q, bwd_q = paired_spread(rows[0], rows[1], "nfe_bwd")
    assert fwd_q == (0.5, 0.5) and bwd_q == (0.5, 0.5)
    fwd_q, bwd_q = paired_spread(rows[2], rows[3], "nfe_fwd")  # the backprop pair: per forward evaluation
    assert fwd_q == (2.0, 2.0) and bwd_q == (2.0, 2.0)
    text = markdown(rows)
    assert "| 0.50 (0.50–0.50) | 0.50 (0.50–0.50) |" in text
    assert "| 2.00 (2.00–2.00) | 2.00 (2.00–2.00) |" in text
    assert "(forward and backward): 1/2; with both ratios' first quartile at or below 1: 1/2" in text


def test_methods_read_the_same_counts_whether_the_timed_programs_return_them_or_not():
    """A Method times programs that return their counts or that do not ("off": counted in a
    separate run), and reads the same exact counts either way; no host callback in them."""
    import pytest

    pytest.importorskip("jax")
    from benchmarks.jax_cost import Method

    def small_mlp():
        import jax.numpy as jnp
        import numpy as np

        rng = np.random.default_rng(0)
        w = jnp.asarray(rng.normal(0, 0.5, (8, 8)), jnp.float32)
        y0 = jnp.asarray(rng.normal(size=(16, 8)), jnp.float32)
        return (lambda t, y, p: jnp.tanh(y @ p), y0, w, (0.0, 1.0), lambda ys: jnp.sum(ys ** 2))

    for name in ("jax-adjoint",):  # Method's paths are the same for jax-backprop (its counts: test_jax_counts)
        seen = {}
        for mode in ("returned", "off"):
            m = Method(name, small_mlp(), 1e-5, counts=mode)
            assert "callback" not in m.grad.as_text(), (name, mode)
            total, fwd = m.measure_once()
            assert total > 0 and fwd > 0  # both programs ran (their times are the benchmark's business)
            seen[mode] = (m.nfe_fwd, m.nfe_bwd)
        assert seen["returned"] == seen["off"] and min(seen["returned"]) > 0, (name, seen)


def test_processes_pool_their_repeats_and_must_count_alike():
    """Rows of one cell from several processes: medians over the pooled repeats (so one slow
    process moves them less than its own median would), repeat pairing kept in process order,
    compile time the median of the processes', and differing counts refused."""
    import pytest

    from benchmarks.jax_cost import merge_processes

    fast = [(0.010, 0.004)] * 3
    slow = [(0.030, 0.012)] * 3
    runs = [[_row("jax-adjoint", 10, 20, fast)], [_row("jax-adjoint", 10, 20, fast)], [_row("jax-adjoint", 10, 20, slow)]]
    runs[2][0]["compile_s"] = 9.0
    (row,) = merge_processes(runs)
    assert row["repeats"] == fast + fast + slow
    assert row["ms"] == pytest.approx(10.0) and row["fwd_ms"] == pytest.approx(4.0) and row["bwd_ms"] == pytest.approx(6.0)
    assert row["us_per_fwd"] == pytest.approx(400.0) and row["us_per_bwd"] == pytest.approx(300.0)
    assert row["compile_s"] == 1.0 and (row["nfe_fwd"], row["nfe_bwd"]) == (10, 20)
    with pytest.raises(ValueError, match="different evaluations"):
        merge_processes([[_row("jax-adjoint", 10, 20, fast)], [_row("jax-adjoint", 11, 20, fast)]])


def test_children_get_the_arguments_they_parse(monkeypatch):
    """A cell or a fit measured in fresh processes: what the parent passes each child
    (tooling.in_processes) parses back, in the child's own parser, into the same cell, and the
    parent pools what the children wrote."""
    from benchmarks import jax_cost, jax_fixed_cost

    calls = []

    def fake_in_processes(module, argv, processes, json_flag="--json"):
        calls.append((module, argv, json_flag))
        return [[_row("jax-adjoint", 10, 20, [(0.01, 0.004)])] for _ in range(processes)]

    monkeypatch.setattr(jax_cost, "in_processes", fake_in_processes)
    (row,) = jax_cost.cell_in_processes("cnf", 1e-5, 0, 3, 1, "off", 2, "sync")
    assert row["repeats"] == [(0.01, 0.004)] * 2
    module, argv, flag = calls.pop()
    child = jax_cost._parser().parse_args([*argv, flag, "rows.json"])
    assert module == "benchmarks.jax_cost" and child.rows_json == "rows.json"
    assert (child.cell, child.repeats, child.warmup, child.counts, child.dispatch) == \
        ("cnf,1e-05,0", 3, 1, "off", "sync")

    monkeypatch.setattr(jax_fixed_cost, "in_processes", fake_in_processes)
    parent = jax_fixed_cost._parser().parse_args(["--steps", "2,4", "--repeats", "5", "--warmup", "0",
                                                  "--processes", "3"])
    assert len(jax_fixed_cost.fits_in_processes("mlp-wide", "async", parent)) == 3
    module, argv, flag = calls.pop()
    child = jax_fixed_cost._parser().parse_args([*argv, flag, "fit.json"])
    assert module == "benchmarks.jax_fixed_cost" and child.json == "fit.json"
    assert (child.child, child.steps, child.repeats, child.warmup) == ("mlp-wide,async", "2,4", 5, 0)


def test_the_scripts_take_the_shared_jax_problems():
    """Both scripts measure problems.py's JAX solve problems under their names there (--help and
    bad arguments: tests/test_benchmark_scripts.py)."""
    from benchmarks import jax_cost, jax_fixed_cost
    from benchmarks.problems import SOLVE_PROBLEMS

    assert jax_cost._parser().parse_args([]).problems == ["mlp-normal", "mlp-wide", "cnf", "odenet-small"] \
        == list(SOLVE_PROBLEMS)
    assert jax_cost.SLOW in SOLVE_PROBLEMS
    assert jax_fixed_cost._parser().parse_args([]).problems == ["mlp-normal"]


def test_saved_rows_rebuild_the_table(tmp_path):
    """--out writes the table and, beside it, the rows with their repeats: the same table comes
    back from them."""
    import json

    from benchmarks.jax_cost import markdown, save

    theirs = [(0.030 + 0.001 * i, 0.010 + 0.0005 * i) for i in range(5)]
    rows = [_row("jax-adjoint", 10, 20, [(t * 0.9, f * 1.1) for t, f in theirs]), _row("diffrax-backsolve", 10, 20, theirs)]
    written = save(str(tmp_path / "table.md"), markdown(rows), rows)
    assert written == [str(tmp_path / "table.md"), str(tmp_path / "table.json")]
    assert (tmp_path / "table.md").read_text() == markdown(rows) + "\n"
    back = json.loads((tmp_path / "table.json").read_text())
    for row in back:
        row["repeats"] = [tuple(r) for r in row["repeats"]]
    assert markdown(back) == markdown(rows)


def test_fixed_cost_fit_recovers_the_line_and_the_table_gives_the_processes_range():
    """benchmarks/jax_fixed_cost.py: the fitted line is the one the points lie on; the table's
    cells are the median of the processes' fits and their range."""
    import pytest

    from benchmarks.jax_fixed_cost import fit_line, markdown

    nfe = [7, 13, 25, 49, 97]
    fixed, per_eval = fit_line(nfe, [(300 + 65 * n) * 1e-6 for n in nfe])
    assert fixed == pytest.approx(300, abs=1e-6) and per_eval == pytest.approx(65, abs=1e-9)
    with pytest.raises(ValueError, match="two different evaluation counts"):
        fit_line([7, 7], [1e-3, 2e-3])
    runs = [{"jax-adjoint": {"fit": (a, 60.0)}, "diffrax-backsolve": {"fit": (a + 50, 61.0)}} for a in (100, 200, 400)]
    assert "| mlp | sync | 3 | 200.0 (100.0–400.0) | 250.0 (150.0–450.0) | 60.0 (60.0–60.0) | 61.0 (61.0–61.0) |" \
        in markdown({("mlp", "sync"): runs})

