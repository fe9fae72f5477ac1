"""Executors: isolation (abort, hang), Dask against serial, resume after a kill, the result
fragments, the default choice, per-cell peak RSS.

The trivial task (tests/fixtures/trivial_plugin.py) is plain Python, so a fresh process per cell
costs a fraction of a second here; its options make chosen seeds abort or hang.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from odebench.cli import main
from odebench.execution import ExecutorSettings, choose_executor
from odebench.results import ResultStore, read_result_file

ROOT = Path(__file__).resolve().parent.parent
TRIVIAL = ["run", "-p", "tests.fixtures.trivial_plugin", "--task", "trivial", "--backend", "py-none", "--quiet"]


def invoke(args):
    return CliRunner().invoke(main, args)


def test_abort_and_hang_end_their_cells_only(tmp_path):
    """Seed 2 aborts its process, seed 4 hangs: the others are ok, exit 1 with a summary."""
    result = invoke([*TRIVIAL, "--seed", "0..5", "--opt", "abort_seed=2", "--opt", "hang_seed=4", "--executor", "process", "--workers", "2",
                     "--timeout", "4", "--out", str(tmp_path), "--run-id", "iso"])
    assert result.exit_code == 1, result.output
    frame = read_result_file(tmp_path / "iso.parquet").set_index("seed")
    assert sorted(frame.index) == [0, 1, 2, 3, 4, 5]
    assert frame.loc[2, "status"] == "failed" and "SIGABRT (6)" in frame.loc[2, "error"]
    assert frame.loc[4, "status"] == "timeout" and "--timeout 4" in frame.loc[4, "error"]
    assert 4 <= frame.loc[4, "time_total_s"] < 10
    ok = frame.drop(index=[2, 4])
    assert set(ok["status"]) == {"ok"} and list(ok["metric"]) == [s * 0.5 + 0.25 for s in ok.index]
    assert set(frame["executor"]) == {"process"} and set(frame["threads_per_cell"]) == {1}  # 2 cores / 2 workers
    assert "2 of 6 cells did not finish ok" in result.stderr and "1 timeout" in result.stderr


def test_dask_matches_serial_and_isolates(tmp_path, decay_plugin):
    """A deterministic float64 grid gives the same figures on a Dask LocalCluster as in process;
    on Dask an abort kills its worker (a failed row) and a hang is stopped at --timeout."""
    pytest.importorskip("distributed")
    grid = ["run", "-p", decay_plugin, "--task", "decay", "--backend", "torch-adjoint,torch-backprop",
            "--tol", "1e-4,1e-7", "--dtype", "float64", "--steps", "4", "--eval-tol", "none", "--quiet",
            "--out", str(tmp_path)]
    assert invoke([*grid, "--executor", "serial", "--run-id", "serial"]).exit_code == 0
    assert invoke([*grid, "--executor", "dask", "--workers", "2", "--run-id", "dask"]).exit_code == 0
    serial, dask = (read_result_file(tmp_path / f"{r}.parquet").set_index(["backend", "rtol"]).sort_index()
                    for r in ("serial", "dask"))
    assert len(serial) == 4 and set(dask["executor"]) == {"dask"}
    for column in ("metric", "train_loss", "initial_loss", "nfe_forward", "nfe_backward", "steps_accepted"):
        assert list(dask[column]) == list(serial[column]), column
    result = invoke([*TRIVIAL, "--seed", "0..3", "--opt", "abort_seed=1", "--executor", "dask", "--workers", "2",
                     "--out", str(tmp_path), "--run-id", "dask-abort"])
    assert result.exit_code == 1
    frame = read_result_file(tmp_path / "dask-abort.parquet").set_index("seed")
    assert frame.loc[1, "status"] == "failed" and "worker running the cell died" in frame.loc[1, "error"]
    assert set(frame.drop(index=1)["status"]) == {"ok"}
    result = invoke([*TRIVIAL, "--seed", "0..2", "--opt", "hang_seed=0", "--executor", "dask", "--workers", "2",
                     "--timeout", "3", "--out", str(tmp_path), "--run-id", "dask-hang"])
    frame = read_result_file(tmp_path / "dask-hang.parquet").set_index("seed")
    assert result.exit_code == 1 and frame.loc[0, "status"] == "timeout"
    assert list(frame.loc[[1, 2], "status"]) == ["ok", "ok"]


def _fragments(path: Path) -> list:
    return list(path.glob("*.json")) if path.is_dir() else []


def test_resume_after_kill_runs_each_cell_once(tmp_path):
    """A grid killed with SIGKILL reads back with every finished cell; --resume runs the rest."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "odebench", *TRIVIAL, "--seed", "0..29", "--opt", "work_ms=60", "--executor",
           "serial", "--out", str(tmp_path), "--run-id", "k"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = tmp_path / "k.parts"
    deadline = time.time() + 60
    while time.time() < deadline and len(_fragments(parts)) < 5:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    written = len(_fragments(parts))
    assert 5 <= written < 30, proc.communicate()
    before = read_result_file(tmp_path / "k.parquet")
    assert len(before) == written and set(before["status"]) == {"ok"}
    result = invoke(["run", "--resume", "k", "--out", str(tmp_path), "--executor", "serial", "--quiet"])
    assert result.exit_code == 0, result.output
    after = read_result_file(tmp_path / "k.parquet")
    assert sorted(after["seed"]) == list(range(30)) and set(after["status"]) == {"ok"}
    assert not parts.exists()  # consolidated
    kept = after.set_index("seed").loc[sorted(before["seed"]), "time_total_s"]
    assert list(kept) == list(before.set_index("seed").loc[sorted(before["seed"]), "time_total_s"])  # not rerun
    again = invoke(["run", "--resume", "k", "--out", str(tmp_path), "--quiet"])
    assert again.exit_code == 0 and "nothing to run" in again.output


def test_resume_replaces_a_failed_row(tmp_path):
    """A cell that failed is run again by --resume and keeps one row (the new one)."""
    first = invoke([*TRIVIAL, "--seed", "0..2", "--opt", "abort_seed=1", "--executor", "process",
                    "--out", str(tmp_path), "--run-id", "f"])
    assert first.exit_code == 1
    stamp = read_result_file(tmp_path / "f.parquet").set_index("seed").loc[1, "time_total_s"]
    second = invoke(["run", "--resume", "f", "--out", str(tmp_path), "--executor", "process", "--quiet"])
    assert second.exit_code == 1 and "1 of 1 cells did not finish ok" in second.stderr  # only seed 1 ran
    frame = read_result_file(tmp_path / "f.parquet")
    assert sorted(frame["seed"]) == [0, 1, 2]
    assert frame.set_index("seed").loc[1, "time_total_s"] != stamp


def _row(seed: int, status: str = "ok") -> dict:
    return {"run_id": "s", "task": "t", "model": "m", "backend": "b", "solver": None, "rtol": None, "atol": None,
            "seed": seed, "status": status, "metric": float(seed)}


def test_store_fragments_read_consolidate_and_survive_a_crash(tmp_path):
    store = ResultStore(tmp_path, "s")
    for seed in range(3):
        store.append(_row(seed))
    assert not store.path.exists() and len(_fragments(store.parts)) == 3
    assert list(read_result_file(store.path)["seed"]) == [0, 1, 2]  # readable before consolidation
    store.consolidate()
    assert store.path.exists() and not store.parts.exists()
    # a crash between writing the consolidated file and removing the fragments: each cell still once
    resumed = ResultStore(tmp_path, "s")
    resumed.append(_row(1, "failed"))
    resumed.append(_row(3))
    frame = read_result_file(store.path)
    assert list(frame["seed"]) == [0, 1, 2, 3] and frame.set_index("seed").loc[1, "status"] == "failed"
    tmp = store.parts / ".000-half-written.json.tmp"  # a fragment killed mid-write is ignored
    tmp.write_bytes(b"PAR1 garbage")
    assert len(read_result_file(store.path)) == 4


def test_default_executor(monkeypatch):
    monkeypatch.delenv("ODEBENCH_EXECUTOR", raising=False)
    one = ExecutorSettings()
    assert choose_executor(None, one, 1) == "serial"
    assert choose_executor(None, one, 2) == "process"
    assert choose_executor(None, ExecutorSettings(timeout=5), 1) == "process"
    assert choose_executor("dask", one, 1) == "dask"


def test_default_without_environment_is_process(tmp_path, monkeypatch):
    monkeypatch.delenv("ODEBENCH_EXECUTOR", raising=False)
    result = invoke([*TRIVIAL, "--seed", "0,1", "--out", str(tmp_path), "--run-id", "d"])
    assert result.exit_code == 0
    assert set(read_result_file(tmp_path / "d.parquet")["executor"]) == {"process"}


def test_peak_rss_is_each_cells_own(tmp_path):
    """Seed 0 touches 200 MiB; seed 1, run after it in the same process, reports its own peak."""
    result = invoke([*TRIVIAL, "--seed", "0,1", "--opt", "big_seed=0", "--executor", "serial",
                     "--out", str(tmp_path), "--run-id", "rss"])
    assert result.exit_code == 0
    peak = read_result_file(tmp_path / "rss.parquet").set_index("seed")["process_peak_rss_bytes"]
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("no /proc/self/clear_refs: the peak cannot be reset per cell here")
    assert peak[0] - peak[1] > 150 * 2**20, peak.to_dict()


@pytest.mark.parametrize("args, needle", [
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
    (["--threads", "0"], "--threads must be at least 1, got 0"),
    (["--executor", "serial", "--timeout", "5"], "--timeout needs cells in processes of their own"),
    (["--executor", "serial", "--workers", "2"], "--workers needs cells in processes of their own"),
    (["--scheduler", "tcp://localhost:8786"], "--scheduler is the address of a Dask scheduler; it needs --executor dask"),
    (["--executor", "threads"], "unknown executor 'threads'"),
    (["--run-id", "a/b"], "--run-id 'a/b': a run id names files"),
    (["--seed", "5..2"], "--seed: the range '5..2' is empty"),
])
def test_execution_bad_input(tmp_path, args, needle):
    one_line_error([*TRIVIAL, "--seed", "0,1", "--out", str(tmp_path), *args], needle, tmp_path)


@pytest.mark.parametrize("run_id, needle", [("nosuchrun", "--resume nosuchrun: no such run in"),
                                            ("../x", "--resume '../x': a run id names files")])
def test_resume_bad_input(tmp_path, run_id, needle):
    one_line_error(["run", "--resume", run_id, "--out", str(tmp_path)], needle, tmp_path)


def one_line_error(args, needle, tmp_path):
    result = invoke(args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not list(tmp_path.glob("*.parquet")) and not list(tmp_path.glob("*.parts"))  # nothing ran


def test_resume_refuses_grid_options(tmp_path):
    assert invoke([*TRIVIAL, "--seed", "0", "--out", str(tmp_path), "--run-id", "g"]).exit_code == 0
    result = invoke(["run", "--resume", "g", "--out", str(tmp_path), "--task", "cnf", "--seed", "3"])
    assert result.exit_code == 2
    assert "--resume takes the grid from run g; do not give --task, --seed with it" in result.stderr


def test_existing_cluster_through_scheduler_address(tmp_path):
    """--scheduler submits to a cluster odebench did not start (here a LocalCluster of the test's)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = invoke([*TRIVIAL, "--seed", "0..3", "--executor", "dask", "--scheduler", cluster.scheduler_address,
                         "--out", str(tmp_path), "--run-id", "remote"])
        assert result.exit_code == 0, result.output
        assert len(cluster.scheduler.workers) == 1  # the cluster outlives the run
    frame = read_result_file(tmp_path / "remote.parquet")
    assert sorted(frame["seed"]) == [0, 1, 2, 3] and set(frame["executor"]) == {"dask"}


def test_executor_benchmark_runs_small(capsys):
    """benchmarks/executors.py's writing and kill sections on a small grid (their checks are asserts)."""
    from benchmarks import executors

    assert executors.main(["--cells", "120", "--kills", "1", "--sections", "writing,kills"]) == 0
    out = capsys.readouterr().out
    assert "### Writing 120 rows" in out and "final --resume: 120 cells, each once, all ok" in out
