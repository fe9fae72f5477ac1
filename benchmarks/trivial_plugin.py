"""A task that does (almost) nothing, in a framework of plain Python: what the executors cost.

``odebench run -p benchmarks.trivial_plugin --task trivial --backend py-none --seed 0..999`` is a
grid of 1,000 cells whose own work is a few microseconds, so its time is odebench's: planning,
process or Dask overhead, the result file.  The options make a cell misbehave on purpose, for
the tests of isolation: ``abort_seed`` aborts the cell's process (SIGABRT), ``hang_seed`` sleeps
far past any timeout, ``big_seed`` touches ``big_mb`` MiB (a peak-RSS figure to find),
``work_ms`` busy-waits per step (a stand-in for real work).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

from odebench.hookspecs import hookimpl
from odebench.protocols import StepResult
from odebench.specs import BackendSpec, ModelSpec, RuntimeSpec, TaskSpec, lazy


@dataclass
class TrivialOptions:
    iterations: int = 2
    work_ms: float = 0.0
    abort_seed: int = -1
    hang_seed: int = -1
    big_seed: int = -1  # this seed's cell holds big_mb of touched memory during its steps
    big_mb: int = 200


class PyRuntime:
    """The runtime of plain Python: one device, random's seed, no memory figures."""

    framework = "py"

    def resolve_device(self, device: str) -> str:
        return "cpu"

    def seed(self, seed: int) -> None:
        random.seed(seed)

    def gpu_name(self, device: str):
        return None

    def memory_kind(self, device: str) -> str:
        return "none"

    def synchronize(self, device: str) -> None:
        pass

    def trainer(self, problem, odeint, device):
        return problem.trainer(odeint)


class TrivialProblem:
    """Its metric is a fixed function of the seed, so every executor must report the same one."""

    model = None
    optimizer = ("none", {})

    def __init__(self, options: TrivialOptions, seed: int) -> None:
        self.options = options
        self.seed = seed

    def trainer(self, odeint):
        return self

    def n_params(self) -> int:
        return 0

    def step(self, iteration: int, probe_memory: bool = False) -> StepResult:
        if self.seed == self.options.abort_seed:
            os.abort()
        if self.seed == self.options.hang_seed:
            time.sleep(3600)
        if self.seed == self.options.big_seed:
            held = bytearray(self.options.big_mb << 20)  # zero pages: touch them so they count in RSS
            held[::4096] = b"\x01" * len(held[::4096])
            del held
        start = time.perf_counter()
        while (time.perf_counter() - start) * 1e3 < self.options.work_ms:
            pass
        elapsed = time.perf_counter() - start
        return StepResult(loss=1.0 / (1 + self.seed + iteration), time_forward_s=elapsed, time_backward_s=0.0)

    def evaluate(self, odeint) -> float:
        return self.seed * 0.5 + 0.25

    def extras(self) -> dict:
        return {}

    def artifacts(self, odeint, out_dir, stem) -> list:
        return []


class TrivialTask:
    @staticmethod
    def setup(options, *, seed, device, dtype, model):
        return TrivialProblem(options, seed)


@hookimpl
def odebench_register_runtimes(register):
    register(RuntimeSpec(framework="py", load=lazy("benchmarks.trivial_plugin:PyRuntime"),
                         description="plain Python (the trivial task's)"))


@hookimpl
def odebench_register_backends(register):
    register(BackendSpec(name="py-none", framework="py", method="none", load=lazy("benchmarks.trivial_plugin:PyRuntime"),
                         description="no ODE: selects the plain-Python framework for the trivial task"))


@hookimpl
def odebench_register_tasks(register):
    register(TaskSpec(name="trivial", description="a few microseconds per cell: the executors' own cost",
                      options=TrivialOptions, frameworks={"py": lazy("benchmarks.trivial_plugin:TrivialTask")},
                      models=(ModelSpec("const", ode=False, description="no parameters, no ODE"),),
                      metric_name="seed_value", trains=False))
