"""The process executor: each cell in a fresh Python process, ``--workers`` at a time.

A cell's process is started with ``python -m odebench_executors.child`` in a session of its
own, so the coordinator can stop it (and anything it started) at ``--timeout``, and Ctrl-C in a
terminal reaches only the coordinator.  A process that dies without sending its row -- a
segfault, an abort, the kernel's OOM killer -- gives a ``failed`` row naming the signal.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Optional

from odebench.execution import CellJob, ExecutorSettings, default_threads, thread_environment
from odebench.harness import stopped_row

POLL_S = 1.0  # longest wait between checks of the running cells' deadlines


class ProcessExecutor:
    name = "process"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.workers = settings.workers
        # cells side by side split the cores; one at a time keeps the framework's default
        self.threads = settings.threads or (default_threads(self.workers) if self.workers > 1 else None)

    def run(self, jobs, registry, on_start=None, progress_factory=None):
        pending = deque(dataclasses.replace(job, threads=self.threads) for job in jobs)
        running: list[CellProcess] = []
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    job = pending.popleft()
                    if on_start:
                        on_start(job)
                    running.append(CellProcess(job, progress_factory(job.cell) if progress_factory else None))
                wait([cell.conn for cell in running], timeout=_next_wait(running))
                for cell in list(running):
                    row = cell.poll(registry)
                    if row is not None:
                        running.remove(cell)
                        yield cell.job, row
        finally:
            for cell in running:
                cell.stop()


def _next_wait(running) -> float:
    deadlines = [cell.deadline for cell in running if cell.deadline is not None]
    return max(0.0, min([POLL_S, *(d - time.monotonic() for d in deadlines)]))


class CellProcess:
    """One job in its own process: started at construction, then polled until it yields a row."""

    def __init__(self, job: CellJob, progress=None) -> None:
        self.job = job
        self.progress = progress
        self.started = time.monotonic()
        self.deadline = self.started + job.timeout if job.timeout else None
        self.row: Optional[dict] = None
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, **thread_environment(job.threads))
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.process = subprocess.Popen([sys.executable, "-m", "odebench_executors.child", str(write_fd)],
                                        stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env,
                                        start_new_session=True)
        os.close(write_fd)
        self.conn = Connection(read_fd, writable=False)
        try:
            self.process.stdin.write(pickle.dumps(job))
            self.process.stdin.close()
        except BrokenPipeError:  # it died before reading its job: poll reports how
            pass

    def poll(self, registry) -> Optional[dict]:
        """The cell's row once it has one (its own, or failed / timeout), else None."""
        self._drain()
        if self.row is not None:
            self._reap()
            return self.row
        elapsed = time.monotonic() - self.started
        code = self.process.poll()
        if code is not None:
            self._drain()  # a row sent just before exiting
            if self.row is not None:
                return self._finish()
            return self._finish(stopped_row(self.job, registry, "failed", _death(code), elapsed))
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.stop()
            error = f"stopped after {elapsed:.1f} s: the cell ran past --timeout {self.job.timeout:g}"
            return self._finish(stopped_row(self.job, registry, "timeout", error, elapsed))
        return None

    def _drain(self) -> None:
        try:
            while self.row is None and self.conn.poll():
                message = self.conn.recv()
                if message[0] == "row":
                    self.row = message[1]
                elif self.progress is not None:
                    self.progress.update(*message[1:])
        except (EOFError, OSError):  # the process is gone; poll tells how
            pass

    def _finish(self, row: Optional[dict] = None) -> dict:
        self.row = row if row is not None else self.row
        self._close()
        return self.row

    def _reap(self) -> None:
        """The row is in: give the process a moment to exit, then stop it."""
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.stop()
        self._close()

    def stop(self) -> None:
        """Kill the cell's process and everything it started (its session)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self._close()

    def _close(self) -> None:
        if not self.conn.closed:
            self.conn.close()
        if self.progress is not None:
            self.progress.close()
            self.progress = None


def _death(code: int) -> str:
    """Why a cell's process ended without its row."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        hint = {"SIGKILL": " (often the kernel's out-of-memory killer)", "SIGSEGV": " (a segmentation fault)",
                "SIGABRT": " (an abort)"}.get(name, "")
        return f"the cell's process was killed by {name} ({-code}){hint}"
    return f"the cell's process exited with code {code} without sending its row"


def run_isolated(job: CellJob, registry) -> dict:
    """One job in a process of its own, waited for here (a Dask worker's way to honour --timeout)."""
    cell = CellProcess(job)
    while True:
        wait([cell.conn], timeout=_next_wait([cell]))
        row = cell.poll(registry)
        if row is not None:
            return row
