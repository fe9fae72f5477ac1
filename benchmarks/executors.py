"""What running a grid costs beyond its cells, and that its result file survives kills (not a test).

    python -m benchmarks.executors [--cells 1000] [--kills 5] [--sections writing,kills,dask,throughput]
                                   [--cnf-steps 100]

Results: docs/measurements/executors.md.

1. Writing: the 1,000-cell trivial grid's rows (tests/fixtures/trivial_plugin.py, one real row
   each) appended to a ResultStore one by one -- time per append at the first and the last
   hundred cells, the consolidation at the end, the file's size -- against the old store that
   rewrote the whole parquet file per cell.
2. Kills: the same grid (5 ms of work per step) run with ``odebench run --executor serial`` and
   SIGKILLed at random moments (0.5-3 s after its first finished cell) --kills times, each
   attempt after the first a ``--resume``; after each kill the file must read back with at least
   as many rows as the cells the run had reported finished, each once; ``--resume`` then
   completes it.
3. Throughput: 8 small cnf cells (seeds 0..7, torch-adjoint, --cnf-steps steps, batch 64, tol 1e-3)
   run serially with the framework's threads (torch's default: one per core), serially with one
   thread, and on the process executor with --workers 1 and 2 (one thread per cell when two
   share the 2 cores: the fair setting); wall time of the whole command.
4. Dask: the trivial grid on a LocalCluster of 2 workers against the serial executor; overhead
   per cell = (Dask wall - serial wall) / cells, cluster start included.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.tooling import clock, machine_info, machine_lines, markdown_table, names, parser, positive_int

ROOT = Path(__file__).resolve().parent.parent
TRIVIAL = ["-p", "tests.fixtures.trivial_plugin", "--task", "trivial", "--backend", "py-none", "--quiet"]
CNF = ["--task", "cnf", "--backend", "torch-adjoint", "--batch-size", "64", "--tol", "1e-3", "--seed", "0..7", "--quiet"]


def odebench(*args, env=None, check=True) -> float:
    """Run ``python -m odebench run ARGS``; its wall time in seconds."""
    seconds, done = clock(lambda: subprocess.run([sys.executable, "-m", "odebench", "run", *args], cwd=ROOT,
                                                 env=_env(env), capture_output=True, text=True))
    if check and done.returncode != 0:
        raise SystemExit(f"odebench run {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


def _env(extra=None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("ODEBENCH_EXECUTOR", None)
    env.update(extra or {})
    return env


def _trivial_row(out: Path) -> dict:
    import pandas as pd

    odebench(*TRIVIAL, "--seed", "0", "--executor", "serial", "--out", str(out), "--run-id", "one")
    return pd.read_parquet(out / "one.parquet").to_dict("records")[0]


def _old_append(path: Path, rows: list, row: dict) -> None:
    """The store before fragments: every cell rewrote the whole file (atomically)."""
    import pandas as pd

    from odebench.results import normalise

    rows.append(row)
    frame = normalise(pd.DataFrame(rows))
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def writing(cells: int, out: Path) -> dict:
    from odebench.results import ResultStore, read_result_file

    row = _trivial_row(out)
    store, new = ResultStore(out, "new"), []
    old_path, old_rows, old = out / "old.parquet", [], []
    for seed in range(cells):
        this = dict(row, seed=seed)
        new.append(clock(lambda: store.append(this))[0])
        old.append(clock(lambda: _old_append(old_path, old_rows, dict(this)))[0])
    consolidate, _ = clock(store.consolidate)
    assert len(read_result_file(store.path)) == cells
    head, tail = slice(0, 100), slice(cells - 100, cells)
    return {"new_first": statistics.median(new[head]), "new_last": statistics.median(new[tail]),
            "old_first": statistics.median(old[head]), "old_last": statistics.median(old[tail]),
            "new_total": sum(new), "old_total": sum(old), "consolidate": consolidate,
            "size": store.path.stat().st_size, "old_size": old_path.stat().st_size}


PROGRESS = re.compile(r"^\[\d+/\d+\]", flags=re.M)  # a progress line: one cell finished


def _until_first_cell(proc) -> str:
    """The run's stderr up to its first finished cell (or its end): the random kill that follows
    lands in the grid, not in Python's start-up, which on a loaded machine can take longer than
    the longest wait."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if PROGRESS.match(line):
            break
    return "".join(seen)


def kills(cells: int, times: int, out: Path) -> list:
    """SIGKILL the grid ``times`` times at random moments; after each, the file is read back."""
    from odebench.results import read_result_file

    rng, report, reported_total = random.Random(0), [], 0
    loud = [a for a in TRIVIAL if a != "--quiet"]  # progress lines count the cells each attempt finished
    args = [sys.executable, "-m", "odebench", "run", *loud, "--seed", f"0..{cells - 1}", "--executor", "serial",
            "--out", str(out), "--opt", "work_ms=5"]
    for attempt in range(times):
        cmd = args + (["--run-id", "k"] if attempt == 0 else [])
        if attempt:
            cmd = [sys.executable, "-m", "odebench", "run", "--resume", "k", "--out", str(out), "--executor", "serial"]
        env = _env({"ODEBENCH_PROGRESS": "lines"})
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        before = _until_first_cell(proc)
        time.sleep(rng.uniform(0.5, 3.0))
        proc.send_signal(signal.SIGKILL)
        reported = len(PROGRESS.findall(before + proc.communicate()[1]))
        reported_total += reported
        frame = read_result_file(out / "k.parquet")
        unique = len(set(frame["seed"]))
        assert len(frame) >= reported_total, "a cell reported finished is missing"
        report.append({"rows": len(frame), "unique": unique, "reported_this_attempt": reported})
        assert unique == len(frame), "a cell recorded twice"
    odebench("--resume", "k", "--out", str(out), "--executor", "serial", env={"ODEBENCH_PROGRESS": "none"})
    final = read_result_file(out / "k.parquet")
    assert sorted(final["seed"]) == list(range(cells)) and set(final["status"]) == {"ok"}
    return report


def throughput(out: Path, steps: int) -> list:
    runs = [("serial, torch's default threads", ["--executor", "serial"], {}),
            ("serial, 1 thread", ["--executor", "serial"], {"OMP_NUM_THREADS": "1"}),
            ("process, --workers 1", ["--executor", "process", "--workers", "1"], {}),
            ("process, --workers 2 (1 thread each)", ["--executor", "process", "--workers", "2"], {})]
    return [(label, odebench(*CNF, "--steps", str(steps), *args, "--out", str(out), env=env))
            for label, args, env in runs]


def dask_overhead(cells: int, out: Path) -> dict:
    seeds = ["--seed", f"0..{cells - 1}"]
    serial = odebench(*TRIVIAL, *seeds, "--executor", "serial", "--out", str(out))
    dask = odebench(*TRIVIAL, *seeds, "--executor", "dask", "--workers", "2", "--out", str(out))
    process = odebench(*TRIVIAL, "--seed", "0..99", "--executor", "process", "--workers", "2", "--out", str(out))
    return {"serial": serial, "dask": dask, "per_cell_ms": (dask - serial) / cells * 1e3,
            "process_100": process}


def print_writing(w: dict, cells: int) -> None:
    ms = lambda s: f"{s * 1e3:.2f} ms"  # noqa: E731
    print(f"\n### Writing {cells} rows\n")
    print(markdown_table(["store", "append, cells 1-100", "append, last 100", "all appends", "consolidation", "file"], [
        ["fragments (now)", ms(w["new_first"]), ms(w["new_last"]), f"{w['new_total']:.2f} s", f"{w['consolidate']:.2f} s",
         f"{w['size'] / 1024:.0f} KiB"],
        ["rewrite per cell (before)", ms(w["old_first"]), ms(w["old_last"]), f"{w['old_total']:.2f} s", "-",
         f"{w['old_size'] / 1024:.0f} KiB"]]))


def print_kills(report: list, cells: int) -> None:
    print(f"\n### {len(report)} SIGKILLs of the {cells}-cell grid (each attempt after the first a --resume)\n")
    for i, r in enumerate(report, 1):
        print(f"- kill {i}: {r['reported_this_attempt']} cells reported finished by this attempt; the file "
              f"reads back with {r['rows']} rows, each cell once")
    print(f"- final --resume: {cells} cells, each once, all ok")


def print_dask(d: dict, cells: int) -> None:
    print(f"\n### Dask LocalCluster (2 workers) on the {cells}-cell trivial grid\n\n"
          f"serial {d['serial']:.1f} s, dask {d['dask']:.1f} s: {d['per_cell_ms']:.1f} ms per cell over serial "
          f"(cluster start included); process executor, 100 cells, 2 workers: {d['process_100']:.1f} s "
          f"({d['process_100'] / 100 * 2e3:.0f} ms per cell per worker)")


def print_throughput(rows: list, steps: int) -> None:
    base = rows[0][1]
    print(f"\n### 8 small cnf cells ({steps} steps each)\n")
    print(markdown_table(["executor", "wall", "throughput vs serial"],
                         [[label, f"{wall:.1f} s", f"{base / wall:.2f}x"] for label, wall in rows]))


SECTIONS = ("writing", "kills", "dask", "throughput")


def _cells(text: str) -> int:
    value = positive_int(text)
    if value < 100:
        raise argparse.ArgumentTypeError(f"{text} cells: at least 100 (the writing section compares the first and "
                                         "the last hundred)")
    return value


def main(argv=None) -> int:
    ap = parser(__doc__, "python -m benchmarks.executors")
    ap.add_argument("--cells", type=_cells, default=1000)
    ap.add_argument("--kills", type=positive_int, default=5)
    ap.add_argument("--sections", type=names(SECTIONS, "section"), default=",".join(SECTIONS))
    ap.add_argument("--cnf-steps", type=positive_int, default=100, help="training steps of each cnf cell (throughput)")
    args = ap.parse_args(argv)
    print(machine_lines(machine_info("pandas", "pyarrow", "distributed")))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "writing" in args.sections:
            print_writing(writing(args.cells, tmp / "w"), args.cells)
        if "kills" in args.sections:
            print_kills(kills(args.cells, args.kills, tmp / "k"), args.cells)
        if "dask" in args.sections:
            print_dask(dask_overhead(args.cells, tmp / "d"), args.cells)
        if "throughput" in args.sections:
            print_throughput(throughput(tmp / "t", args.cnf_steps), args.cnf_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
