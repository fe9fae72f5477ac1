"""benchmarks/tooling.py: the rules every benchmark script relies on (one-line argument errors,
the clock waiting for the result, the rotating order, quartiles, counting, tables, files)."""

from __future__ import annotations

import json
import statistics
import time

import pytest

from benchmarks import tooling


def _parse(argv, **arguments):
    ap = tooling.parser("A script.\n\nMore.", "python -m benchmarks.x")
    for flag, kind in arguments.items():
        ap.add_argument(f"--{flag}", type=kind)
    return ap.parse_args(argv)


@pytest.mark.parametrize("argv, needle", [
    (["--n", "0"], "argument --n: 0 is not a positive integer"),
    (["--n", "two"], "argument --n: 'two' is not an integer"),
    (["--w", "-1"], "argument --w: -1 is not a whole number >= 0"),
    (["--tols", "1e-3,0"], "argument --tols: tolerance '0' is not a positive number"),
    (["--tols", "1e-3,x"], "argument --tols: tolerance 'x' is not a positive number"),
    (["--problems", "mlp,nope"], "argument --problems: unknown problem(s) nope; the problems are mlp, cnf"),
    (["--nope"], "unrecognized arguments: --nope"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        _parse(argv, n=tooling.positive_int, w=tooling.count, tols=tooling.tolerances,
               problems=tooling.names(["mlp", "cnf"], "problem"))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("python -m benchmarks.x: error: ") and needle in err, err


def test_good_arguments_parse():
    args = _parse(["--n", "3", "--w", "0", "--tols", "1e-3, 1e-5", "--problems", "cnf,mlp"], n=tooling.positive_int,
                  w=tooling.count, tols=tooling.tolerances, problems=tooling.names(["mlp", "cnf"], "problem"))
    assert (args.n, args.w, args.tols, args.problems) == (3, 0, [1e-3, 1e-5], ["cnf", "mlp"])


def test_clock_stops_after_the_result_is_ready():
    seconds, result = tooling.clock(lambda: 7, sync=lambda r: (time.sleep(0.05), r + 1)[1])
    assert result == 8 and seconds >= 0.05


def test_interleaved_rotates_the_first_side():
    assert [order for _, order in tooling.interleaved("ab", 3)] == [["a", "b"], ["b", "a"], ["a", "b"]]
    assert [order for _, order in tooling.interleaved("abc", 4)] == [list("abc"), list("bca"), list("cab"), list("abc")]


def test_quartiles_and_median_interval():
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0]
    q1, q3 = tooling.quartiles(values)
    assert (q1, q3) == (statistics.quantiles(values, n=4)[0], statistics.quantiles(values, n=4)[2]) == (2.0, 7.0)
    assert tooling.quartiles([0.5]) == (0.5, 0.5)
    # 100 values: the order statistics 50 -+ 1.96 * 10 / 2, whatever order they come in
    assert tooling.median_interval(list(range(99, -1, -1))) == (40, 59)


def test_counter_counts_torch_module_calls_with_the_inner_parameters():
    torch = pytest.importorskip("torch")

    class Field(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

        def forward(self, t, y):
            return self.linear(y)

    inner, counter = Field(), tooling.EvalCounter()
    func = counter.torch_module(inner)
    for _ in range(3):
        func(0.0, torch.zeros(1, 2))
    assert counter.calls == 3
    assert [id(p) for p in func.parameters()] == [id(p) for p in inner.parameters()]


def test_counter_counts_jax_evaluations_under_jit():
    jax = pytest.importorskip("jax")
    counter = tooling.EvalCounter()
    field = counter.jax_field(lambda t, y, args: y * args)
    run = jax.jit(lambda y: field(0.0, field(0.0, y, 2.0), 3.0))
    assert float(run(1.0)) == 6.0
    jax.effects_barrier()
    assert counter.calls == 2


def test_markdown_table():
    text = tooling.markdown_table(["a", "b", "c"], [[1, "x", 2.5], ["", 3, None]], "lr")
    assert text == "| a | b | c |\n|---|---:|---|\n| 1 | x | 2.5 |\n|  | 3 | None |"


def test_save_writes_the_table_and_its_rows(tmp_path):
    rows = [{"cell": "a", "nfe": 14}, {"cell": "b", "nfe": 20}]
    paths = tooling.save(str(tmp_path / "t.md"), "| table |", rows)
    assert paths == [str(tmp_path / "t.md"), str(tmp_path / "t.json")]
    assert (tmp_path / "t.md").read_text() == "| table |\n" and json.loads((tmp_path / "t.json").read_text()) == rows
    tooling.save(str(tmp_path / "t.csv"), "| table |", rows)
    assert (tmp_path / "t.csv").read_text().splitlines() == ["cell,nfe", "a,14", "b,20"]


def test_machine_info_is_the_hosts_provenance_and_more():
    from odebench.results import provenance

    info = tooling.machine_info("numpy", "no-such-package-xyz")
    assert info["cpu"] == provenance()["cpu"] and info["numpy_version"] == provenance()["numpy_version"]
    assert info["no-such-package-xyz_version"] == "not installed" and info["usable cores"] >= 1
    assert tooling.machine_lines({"a": 1, "b": "x"}) == "- a: 1\n- b: x"


def test_in_processes_runs_fresh_processes_and_reads_their_json(tmp_path, monkeypatch):
    (tmp_path / "echo_pid.py").write_text(
        "import json, os, sys\njson.dump({'argv': sys.argv[1:-2], 'pid': os.getpid()}, open(sys.argv[-1], 'w'))\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    runs = tooling.in_processes("echo_pid", ["--cell", "mlp"], 2, json_flag="--rows")
    assert [r["argv"] for r in runs] == [["--cell", "mlp"]] * 2 and runs[0]["pid"] != runs[1]["pid"]
