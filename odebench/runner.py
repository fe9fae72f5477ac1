"""Runs a grid: plans its cells, hands them to an executor as jobs, and writes each row to the
run's result file as it arrives.

The import order is one way: runner -> execution (the executor seam) -> harness (one cell),
so a worker process that only runs cells never imports the coordinator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .errors import MissingDependencyError
from .execution import ExecutorSettings, check_settings, choose_executor, make_jobs
from .grid import RunConfig, plan
from .plugins import Registry
from .results import ResultStore, cell_key, new_run_id, run_rows
from .resume import save_grid


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, decided and checked before anything runs or is written."""

    run_id: str
    cells: list  # every cell of the grid, in order
    todo: list  # the places in ``cells`` of those to run (a resumed run: those without an ok row)
    executor: str


def plan_run(config: RunConfig, registry: Registry, executor: Optional[str] = None,
             settings: ExecutorSettings = ExecutorSettings(), resume: bool = False) -> RunPlan:
    """Check the whole grid (names, options, tolerances, data, ``plan``) and the executor with its
    settings, and decide which cells run where; runs and writes nothing (``odebench run --dry-run``
    stops here)."""
    cells = plan(config, registry)
    run_id = config.run_id or new_run_id()
    todo = list(range(len(cells)))
    if resume:
        finished = {cell_key(row) for row in run_rows(config.out_dir, run_id) if row.get("status") == "ok"}
        todo = [i for i in todo if cell_key(cells[i]) not in finished]
    name = choose_executor(executor, settings, len(todo))
    check_executor(registry, name, settings)
    return RunPlan(run_id, cells, todo, name)


def run_grid(config: RunConfig, registry: Registry, on_cell_start=None, on_cell_end=None,
             progress_factory=None, executor: Optional[str] = None,
             settings: ExecutorSettings = ExecutorSettings(), resume: bool = False) -> ResultStore:
    """Run every cell (with ``resume``: every cell of run ``config.run_id`` without an ok row)
    on an executor, writing each row as soon as its cell ends and consolidating at the end.

    Everything is checked before the first cell starts: the grid and the executor with its
    settings (``plan_run``), then the output folder.  ``on_cell_start(job)`` /
    ``on_cell_end(done, total, cell, row)`` report progress."""
    planned = plan_run(config, registry, executor, settings, resume)
    store = ResultStore(config.out_dir, planned.run_id, csv=config.csv)
    runner = registry.executor(planned.executor)(settings)
    save_grid(store, config, registry)
    jobs = make_jobs([planned.cells[i] for i in planned.todo], config, registry, store.run_id, settings, planned.todo)
    rows = runner.run(jobs, registry, on_cell_start, progress_factory)
    try:
        for done, (job, row) in enumerate(rows, 1):
            row["executor"] = planned.executor
            store.append(row)
            if on_cell_end:
                on_cell_end(done, len(jobs), job.cell, row)
    finally:
        if hasattr(rows, "close"):  # an interrupted run stops the executor's cells (its generator's cleanup)
            rows.close()
        store.consolidate()
    return store


def check_executor(registry: Registry, name: str, settings: ExecutorSettings) -> None:
    """The executor called ``name`` exists, is installed and can honour ``settings``."""
    spec = registry.get("executor", name).spec
    missing = registry.missing(name, "executor")
    if missing:
        raise MissingDependencyError(f"executor {name!r} needs {', '.join(missing)}, which is not installed "
                                     f"(install it with pip install 'odebench[{spec.extra}]')")
    check_settings(name, spec, settings)
