"""The result row schema, the on-disk store (one parquet file per run) and provenance.

Each finished cell is written at once as a fragment of its own (``<run_id>.parts/*.json``, one
row, written to a temporary name and renamed, so atomic), at constant cost per cell; at the end of
the run the fragments are consolidated into ``<run_id>.parquet`` (again atomically) and
removed.  Reading a run merges its consolidated file with any fragments left beside it, so a
run that is killed at any point -- between fragments, mid-consolidation -- reads back with
every cell that finished, each once.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import socket
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from .errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

# Required columns (architecture.md section 3), in display order.  Never rename these.
IDENTITY = ["run_id", "timestamp", "task", "model", "backend", "framework", "solver", "rtol", "atol", "seed",
            "steps", "batch_size", "device", "dtype", "task_options"]
OUTCOME = ["status", "error"]
ACCURACY = ["metric_name", "metric", "metric_higher_is_better", "train_loss"]
COST_NFE = ["nfe_forward", "nfe_backward", "steps_accepted", "steps_rejected"]
COST_TIME = ["time_forward_s", "time_backward_s", "time_total_s", "compile_s"]
COST_MEMORY = ["peak_memory_bytes", "memory_kind", "held_for_backward_bytes"]
MODEL = ["n_params"]
PROVENANCE = ["odebench_version", "python_version", "torch_version", "jax_version", "numpy_version",
              "git_commit", "hostname", "cpu", "gpu"]
REQUIRED_COLUMNS = IDENTITY + OUTCOME + ACCURACY + COST_NFE + COST_TIME + COST_MEMORY + MODEL + PROVENANCE

# Extra columns odebench adds (documented in docs/result-file.md).
EXTRA_COLUMNS = ["solver_options", "initial_loss", "baseline_metric", "nfe_forward_first", "nfe_forward_last",
                 "nfe_backward_last", "steps_accepted_backward", "steps_rejected_backward", "nfe_eval",
                 "time_eval_s", "eval_tolerances", "warmup_s", "probe_slowdown", "process_peak_rss_bytes",
                 "artifacts", "executor", "threads_per_cell"]

STATUSES = ("ok", "failed", "diverged", "timeout")
# the columns that name a cell: a run holds one row per cell (the last written wins)
CELL_KEY = ("task", "model", "backend", "solver", "rtol", "atol", "seed")


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions(modules) -> str:
    """json {module: installed version} for the libraries a backend runs on (its ``requires``),
    so a row says which torchdiffeq or diffrax produced it."""
    return to_json({m: _version(m) for m in modules})


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


@functools.lru_cache(maxsize=1)
def _git_commit() -> Optional[str]:  # once per process: every row records it
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def provenance() -> dict:
    """Versions and machine facts recorded in every row (read from metadata, importing no framework)."""
    from .version import __version__

    return {
        "odebench_version": __version__,
        "python_version": platform.python_version(),
        "torch_version": _version("torch"),
        "jax_version": _version("jax"),
        "numpy_version": _version("numpy"),
        "git_commit": _git_commit(),
        "hostname": socket.gethostname(),
        "cpu": _cpu_name(),
    }


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def to_json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _plain(value):
    """A key value as plain Python: None for None and NaN, floats and ints as such."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return float(value) if isinstance(value, float) else value


def is_missing(value) -> bool:
    """None or NaN: a column a row does not have (the tolerance of a ResNet row, a column that
    an older result file lacks), whichever way pandas or JSON gave it back."""
    import pandas as pd

    try:
        return value is None or (not isinstance(value, str) and bool(pd.isna(value)))
    except (TypeError, ValueError):  # a list or array value: present
        return False


def cell_key(values) -> tuple:
    """The identity of a cell, from a row (mapping) or a Cell: equal for a Cell and its row read back."""
    get = values.get if isinstance(values, dict) else lambda name: getattr(values, name)
    return tuple(_plain(get(name)) for name in CELL_KEY)


class ResultStore:
    """Writes one run's rows: a fragment per row as it arrives, consolidated by
    ``consolidate`` into ``<out>/<run_id>.parquet`` (and ``.csv`` if asked)."""

    def __init__(self, out_dir, run_id: str, csv: bool = False) -> None:
        self.out_dir = check_writable_dir(out_dir, "--out")
        self.run_id = run_id
        self.path = self.out_dir / f"{run_id}.parquet"
        self.parts = fragments_dir(self.path)
        self.csv_path = self.out_dir / f"{run_id}.csv" if csv else None
        self.rows: list[dict] = []

    def append(self, row: dict) -> None:
        """Write ``row`` as a fragment of its own: one JSON object (atomic; a fraction of a
        millisecond, whatever the length of the run)."""
        self.rows.append(row)
        self.parts.mkdir(exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{len(self.rows):06d}.json"
        text = json.dumps(row, default=_json_value)
        _atomic_write(self.parts / name, lambda p: p.write_text(text))

    def consolidate(self) -> None:
        """Merge the fragments into the run's file (atomically), then remove them."""
        fragments = _fragments(self.parts)
        if not fragments and (self.path.exists() or not self.rows):
            return
        import pandas as pd

        frame = normalise(pd.DataFrame(_run_rows(self.path)))
        _atomic_write(self.path, lambda p: frame.to_parquet(p, index=False))
        if self.csv_path is not None:
            _atomic_write(self.csv_path, lambda p: frame.to_csv(p, index=False))
        for fragment in fragments:
            fragment.unlink(missing_ok=True)
        try:
            self.parts.rmdir()
        except OSError:  # another writer's fragment, or already gone
            pass


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _json_value(value):
    """A row value JSON cannot encode: numpy scalars as Python numbers, anything else as text."""
    return value.item() if hasattr(value, "item") else str(value)


def fragments_dir(path: Path) -> Path:
    return path.with_name(f"{path.stem}.parts")


def _fragments(parts: Path) -> list[Path]:
    return sorted(parts.glob("*.json")) if parts.is_dir() else []


def _run_rows(path: Path) -> list[dict]:
    """A run's rows: its consolidated file's, then its fragments' in the order written, one per
    cell (the last written wins: a resumed cell replaces its earlier failed row)."""
    import pandas as pd

    rows = pd.read_parquet(path).to_dict("records") if path.exists() else []
    rows += [json.loads(fragment.read_text()) for fragment in _fragments(fragments_dir(path))]
    latest = {cell_key(row): row for row in rows}
    return list(latest.values())


def run_rows(out_dir, run_id: str) -> list[dict]:
    """The rows run ``run_id`` has in ``out_dir`` so far (its file and any fragments), one per
    cell; [] for a run that wrote none.  Reads only: nothing is created."""
    return _run_rows(Path(out_dir) / f"{run_id}.parquet")


def normalise(frame):
    """Every required column present (missing ones as None), required columns first."""
    for col in REQUIRED_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    extras = [c for c in frame.columns if c not in REQUIRED_COLUMNS]
    return frame[REQUIRED_COLUMNS + extras]


# a file without values in these is not a result file
CORE_COLUMNS = ("task", "backend", "status")


def check_writable_dir(path, what: str = "folder") -> Path:
    """``path`` as a folder odebench can write to: created if needed, then a probe file written
    and deleted, so an output folder that cannot be made or written is a one-line
    InvalidInputError before anything runs (not a traceback after the first cell)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{what} {path}: is an existing file, not a folder")
    probe = path / f".odebench-write-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidInputError(f"{what} {path}: cannot create or write to it ({reason})") from None
    return path


def check_writable_file(path, what: str) -> Path:
    """An output file's path: not a folder, its folder writable (see ``check_writable_dir``)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{what} {path}: is a folder; give a file name")
    check_writable_dir(path.parent, f"{what} {path}: its folder")
    return path


def read_result_file(path) -> "pd.DataFrame":
    """One result file (parquet, or csv by its suffix), checked: a missing, unreadable, empty
    or non-result file is a one-line InvalidInputError naming the file.  A run's parquet file
    is read with the fragments beside it (a run still going, or killed before it consolidated)."""
    import pandas as pd

    path = Path(path)
    in_progress = path.suffix == ".parquet" and bool(_fragments(fragments_dir(path)))
    if not path.exists() and not in_progress:
        raise InvalidInputError(f"result file not found: {path}")
    try:
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
        else:  # with the fragments of a run that is running or was killed
            frame = pd.DataFrame(_run_rows(path)) if in_progress else pd.read_parquet(path)
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:  # pyarrow's errors are these too
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InvalidInputError(f"cannot read {path} as a result file (parquet or csv): {reason}") from None
    if frame.empty:
        raise InvalidInputError(f"{path} has no rows; a result file has one row per cell")
    missing = [c for c in CORE_COLUMNS if c not in frame.columns or frame[c].isna().all()]
    if missing:
        raise InvalidInputError(f"{path} is not an odebench result file: no values in column(s) {', '.join(missing)}")
    return normalise(frame)


def result_files(paths: Iterable) -> list[Path]:
    """The result files that ``paths`` name: a file as it is, a folder as the ``*.parquet`` files
    in it (a run's folder also holds its figures, its grid.json and maybe a CSV copy of the
    same rows, none of which is read); a folder with none is a one-line InvalidInputError."""
    files = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(path.glob("*.parquet"))
        if not found:
            raise InvalidInputError(f"{path} is a folder with no result files (*.parquet) in it")
        files += found
    return files


def read_results(paths: Iterable) -> "pd.DataFrame":
    """Load any number of result files (parquet or csv; a folder: its parquet files) into one
    table, each checked by ``read_result_file``."""
    import pandas as pd

    frames = [read_result_file(path) for path in result_files(paths)]
    if not frames:
        raise InvalidInputError("no result files given")
    return normalise(pd.concat(frames, ignore_index=True))
