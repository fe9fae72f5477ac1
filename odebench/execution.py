"""The seam between a grid and where its cells run.

A cell travels as a ``CellJob``: plain, picklable data that carries the cell, the run's
configuration and the recipe of the plugin registry (the ``-p`` modules and where they were
imported from), so any process -- a fresh child, a Dask worker on another machine -- rebuilds
the same registry and runs the cell with ``execute_job``.  An executor (registered by a
plugin, see ``odebench_executors``) yields one row per job as the jobs finish; only the
coordinating process writes rows to the result file.

Nothing here imports a framework.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Sequence

from .errors import InvalidInputError
from .grid import Cell, RunConfig
from .harness import framework_of, run_cell

# Environment variables that bound a framework's threads; set in a worker before it imports one.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
DEFAULT_EXECUTOR_ENV = "ODEBENCH_EXECUTOR"


@dataclass(frozen=True)
class CellJob:
    """One cell as data: what a process needs to run it and where its row goes."""

    index: int  # the cell's place in the planned grid
    cell: Cell
    config: RunConfig
    run_id: str
    recipe: tuple  # (plugin modules, make_plugin_manager kwargs): the registry to rebuild
    sys_path: tuple = ()  # the coordinator's import path, so -p modules import in a worker too
    timeout: Optional[float] = None  # seconds; None: no limit
    threads: Optional[int] = None  # per cell; None: the framework's default


@dataclass(frozen=True)
class ExecutorSettings:
    """What the command line says about execution (``--workers``, ``--timeout``, ...)."""

    workers: int = 1
    timeout: Optional[float] = None
    threads: Optional[int] = None
    scheduler: Optional[str] = None  # a Dask scheduler's address


class Executor(Protocol):
    """Runs jobs and yields ``(job, row)`` as each finishes, in any order; a job that crashed or
    ran out of time still yields a row (status ``failed`` or ``timeout``).  ``on_start(job)`` is
    called when a job starts (where the executor knows it); ``progress_factory(cell)`` gives an
    object with ``update(done, total)`` and ``close()`` for a cell's iterations, or None."""

    name: str

    def run(self, jobs: Sequence[CellJob], registry, on_start: Optional[Callable] = None,
            progress_factory: Optional[Callable] = None) -> Iterator[tuple[CellJob, dict]]: ...


_REGISTRIES: dict = {}


def registry_for(job: CellJob):
    """The registry a job's recipe describes, built once per process (a worker runs many cells)."""
    from .plugins import make_registry

    for path in job.sys_path:
        if path not in sys.path:
            sys.path.append(path)
    plugins, kwargs = job.recipe
    key = repr(job.recipe)
    if key not in _REGISTRIES:
        _REGISTRIES[key] = make_registry(plugins, **kwargs)
    return _REGISTRIES[key]


def thread_environment(threads: Optional[int], environ=None) -> dict:
    """The environment variables that bound a framework's threads (BLAS, OpenMP, XLA's CPU
    client) to ``threads``; {} when None.  They take effect only before a framework loads."""
    if not threads:
        return {}
    env = dict.fromkeys(THREAD_VARIABLES, str(threads))
    flags = (os.environ if environ is None else environ).get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()
    return env


def limit_threads(threads: Optional[int]) -> None:
    """Bound this process's framework threads (see ``thread_environment``), so cells running
    side by side do not fight over cores; workers call it before a cell imports a framework."""
    os.environ.update(thread_environment(threads))


def default_threads(workers: int) -> int:
    """Threads per cell when ``workers`` cells share this machine: its cores split evenly."""
    return max(1, (os.cpu_count() or 1) // workers)


def execute_job(job: CellJob, progress: Optional[Callable[[int, int], None]] = None, registry=None) -> dict:
    """Run one job in this process and return its row (what every executor's worker calls)."""
    limit_threads(job.threads)
    registry = registry if registry is not None else registry_for(job)
    _load_framework(job, registry)
    row = run_cell(job.cell, job.config, registry, job.run_id, progress=progress)
    row["threads_per_cell"] = job.threads
    return row


def _load_framework(job: CellJob, registry) -> None:
    """Import the cell's framework before its clock starts, so a fresh process's import (torch:
    about 2 s) is not counted in ``time_total_s``; a failure is left for the cell to report."""
    try:
        registry.runtime(framework_of(job.cell, registry))
    except Exception:  # run_cell turns it into the cell's row
        pass


def make_jobs(cells: Sequence[Cell], config: RunConfig, registry, run_id: str,
              settings: ExecutorSettings, indices: Optional[Sequence[int]] = None) -> list[CellJob]:
    """The jobs of a grid's cells (``indices``: their places in the planned grid)."""
    recipe = registry.recipe if registry.recipe is not None else ((), {})
    indices = range(len(cells)) if indices is None else indices
    return [CellJob(index, cell, config, run_id, recipe, tuple(sys.path), settings.timeout, settings.threads)
            for index, cell in zip(indices, cells)]


def choose_executor(name: Optional[str], settings: ExecutorSettings, n_cells: int) -> str:
    """The executor of a run: ``--executor``, else ODEBENCH_EXECUTOR, else ``process`` when the
    grid has more than one cell or a timeout, workers or threads are asked for, else ``serial``.

    Why ``process`` for a grid: a cell that crashes (segfault, abort, the OOM killer) ends as a
    ``failed`` row instead of ending the run, each cell's process-wide figures (peak RSS, XLA's
    device peak, which cannot be reset) are its own, and no cell inherits another's allocator
    and compile caches; one worker keeps the cells' timings free of each other.  Its cost is a
    fresh interpreter per cell (importing torch is about 2 s), small beside a real cell."""
    chosen = name or os.environ.get(DEFAULT_EXECUTOR_ENV, "").strip() or None
    if chosen is None:
        asked = settings.workers > 1 or settings.timeout is not None or settings.threads is not None
        chosen = "process" if n_cells > 1 or asked else "serial"
    return chosen


def check_settings(executor: str, spec, settings: ExecutorSettings) -> None:
    """Options an executor cannot honour are input errors before anything runs."""
    if settings.workers < 1:
        raise InvalidInputError(f"--workers must be at least 1, got {settings.workers}")
    if settings.timeout is not None and not settings.timeout > 0:
        raise InvalidInputError(f"--timeout must be a positive number of seconds, got {settings.timeout:g}")
    if settings.threads is not None and settings.threads < 1:
        raise InvalidInputError(f"--threads must be at least 1, got {settings.threads}")
    if not spec.isolates:
        for flag, given in (("--timeout", settings.timeout is not None), ("--workers", settings.workers > 1),
                            ("--threads", settings.threads is not None)):
            if given:
                raise InvalidInputError(f"{flag} needs cells in processes of their own; executor {executor!r} "
                                        "runs them in this process (use --executor process or dask)")
    if settings.scheduler is not None and executor != "dask":
        raise InvalidInputError(f"--scheduler is the address of a Dask scheduler; it needs --executor dask, not {executor!r}")
