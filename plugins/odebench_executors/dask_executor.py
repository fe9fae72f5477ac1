"""The Dask executor: cells as tasks on a ``dask.distributed`` cluster.

Without ``--scheduler`` it starts a LocalCluster of ``--workers`` processes, one thread each
(cells side by side split the cores, as with the process executor); with it, it submits to an
existing cluster started with Dask's own commands.  A cell that kills its worker is not retried
on a LocalCluster (allowed-failures 0) and becomes a ``failed`` row; with ``--timeout`` each
cell runs in a process of its own inside its worker, stopped when it runs past the limit.  A
cell on a CUDA device asks its worker for one ``GPU`` resource.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque

from odebench.execution import CellJob, ExecutorSettings, default_threads, execute_job, registry_for, thread_environment
from odebench.harness import stopped_row


def run_on_worker(job: CellJob) -> dict:
    """A Dask task: the cell's row, run in the worker (in a child process under --timeout)."""
    if job.timeout is None:
        return execute_job(job)
    from .process import run_isolated

    return run_isolated(job, registry_for(job))


class DaskExecutor:
    name = "dask"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.workers = settings.workers
        self.scheduler = settings.scheduler
        # on a cluster its workers' own settings decide; a LocalCluster splits this machine's cores
        self.threads = settings.threads or (None if self.scheduler else default_threads(self.workers))

    def _client(self, gpu: bool):
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            return Client(self.scheduler, timeout=30), None
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # a cell that kills its worker: no retry
            cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR,
                                   env=thread_environment(self.threads), resources={"GPU": 1} if gpu else None)
            return Client(cluster), cluster

    def run(self, jobs, registry, on_start=None, progress_factory=None):
        from distributed import as_completed

        pending = deque(dataclasses.replace(job, threads=self.threads) for job in jobs)
        if not pending:
            return
        gpu = str(pending[0].config.device).startswith("cuda")
        client, cluster = self._client(gpu)
        futures, running = {}, as_completed()
        try:
            while pending or futures:
                # one cell per worker thread at a time: a cell that kills its worker takes no queued
                # cell down with it, and a cell starts when a thread is free for it
                while pending and len(futures) < max(1, sum(client.nthreads().values())):
                    job = pending.popleft()
                    if on_start:
                        on_start(job)
                    future = client.submit(run_on_worker, job, key=f"odebench-{job.run_id}-{job.index}", pure=False,
                                           resources={"GPU": 1} if gpu else None)
                    futures[future] = job
                    running.add(future)
                future = next(running)
                job = futures.pop(future)
                yield job, _row_of(future, job, registry)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _row_of(future, job: CellJob, registry) -> dict:
    """The future's row, or a failed row saying what Dask reported (a worker that died: KilledWorker)."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        error = ("the Dask worker running the cell died: a segfault, abort or out-of-memory kill (the worker's "
                 f"log names the signal) | KilledWorker: {exc}")
    except Exception as exc:  # the task itself never raises: run_cell turns errors into rows
        error = f"Dask: {type(exc).__name__}: {exc}"
    return stopped_row(job, registry, "failed", error, None)
