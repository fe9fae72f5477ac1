"""Runs a grid: plans its cells, hands them to an executor as jobs, and writes each row to the
run's result file as it arrives.

The import order is one way: runner -> execution (the executor seam) -> harness (one cell),
so a worker process that only runs cells never imports the coordinator.
"""

from __future__ import annotations

from typing import Optional

from .errors import MissingDependencyError
from .execution import ExecutorSettings, check_settings, choose_executor, make_jobs
from .grid import RunConfig, plan
from .plugins import Registry
from .results import ResultStore, cell_key, new_run_id
from .resume import save_grid


def run_grid(config: RunConfig, registry: Registry, on_cell_start=None, on_cell_end=None,
             progress_factory=None, executor: Optional[str] = None,
             settings: ExecutorSettings = ExecutorSettings(), resume: bool = False) -> ResultStore:
    """Run every cell (with ``resume``: every cell of run ``config.run_id`` without an ok row)
    on an executor, writing each row as soon as its cell ends and consolidating at the end.

    Everything is checked before the first cell starts: the grid (``plan``), the executor and its
    settings, the output folder.  ``on_cell_start(job)`` / ``on_cell_end(done, total, cell, row)``
    report progress."""
    cells = plan(config, registry)
    store = ResultStore(config.out_dir, config.run_id or new_run_id(), csv=config.csv)
    todo = list(range(len(cells)))
    if resume:
        finished = {cell_key(row) for row in store.previous_rows() if row.get("status") == "ok"}
        todo = [i for i in todo if cell_key(cells[i]) not in finished]
    name = choose_executor(executor, settings, len(todo))
    runner = _executor(registry, name, settings)
    save_grid(store, config, registry)
    jobs = make_jobs([cells[i] for i in todo], config, registry, store.run_id, settings, todo)
    rows = runner.run(jobs, registry, on_cell_start, progress_factory)
    try:
        for done, (job, row) in enumerate(rows, 1):
            row["executor"] = name
            store.append(row)
            if on_cell_end:
                on_cell_end(done, len(jobs), job.cell, row)
    finally:
        if hasattr(rows, "close"):  # an interrupted run stops the executor's cells (its generator's cleanup)
            rows.close()
        store.consolidate()
    return store


def _executor(registry: Registry, name: str, settings: ExecutorSettings):
    """The executor called ``name``, its settings checked (before anything runs)."""
    spec = registry.get("executor", name).spec
    missing = registry.missing(name, "executor")
    if missing:
        raise MissingDependencyError(f"executor {name!r} needs {', '.join(missing)}, which is not installed "
                                     f"(install it with pip install 'odebench[{spec.extra}]')")
    check_settings(name, spec, settings)
    return registry.executor(name)(settings)
