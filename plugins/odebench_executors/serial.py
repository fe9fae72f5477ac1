"""The serial executor: cells in the coordinating process, one after another."""

from __future__ import annotations

from odebench.execution import ExecutorSettings, execute_job


class SerialExecutor:
    """No isolation and no overhead: a crash ends the run (the rows written so far are kept)."""

    name = "serial"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings

    def run(self, jobs, registry, on_start=None, progress_factory=None):
        for job in jobs:
            if on_start:
                on_start(job)
            progress = progress_factory(job.cell) if progress_factory else None
            try:
                row = execute_job(job, progress.update if progress else None, registry=registry)
            finally:
                if progress:
                    progress.close()
            yield job, row
