"""The torch Runtime and Trainer (the contract of odebench.protocols).

The harness owns the loop and the bookkeeping; this module is the only place where torch is
driven on its behalf.  It needs no backend: a model without an ODE trains here with odeint None.
Memory (see memory.py): ``peak_memory_bytes`` is the allocator's peak during the step above what
was allocated before it -- ``cuda_max_allocated`` on CUDA, ``torch_cpu_peak_allocated`` (torch's
own allocation records) on CPU -- and ``held_for_backward_bytes`` what the autograd graph holds
when the forward ends.  
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Optional

import numpy as np
import torch

from odebench.errors import InvalidInputError
from odebench.protocols import BoundOdeint, StepResult

from .memory import PeakAllocated, held_for_backward

DTYPES = {"float32": torch.float32, "float64": torch.float64}
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}


class TorchRuntime:
    framework = "torch"

    @staticmethod
    def resolve_device(device: str) -> str:
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise InvalidInputError(f"--device {device} asked for, but torch {torch.__version__} sees no CUDA device; use cpu or auto")
            return device
        if device == "cpu":
            return device
        raise InvalidInputError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N, auto")

    @staticmethod
    def resolve_dtype(dtype: str):
        try:
            return DTYPES[dtype]
        except KeyError:
            raise InvalidInputError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}") from None

    @staticmethod
    def seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    @staticmethod
    def gpu_name(device: str) -> Optional[str]:
        return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None

    @staticmethod
    def memory_kind(device: str) -> str:
        return "cuda_max_allocated" if device.startswith("cuda") else "torch_cpu_peak_allocated"

    @staticmethod
    def synchronize(device: str) -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(torch.device(device))

    @staticmethod
    def conformance(registry):
        """The conformance kit's adapter for torch backends (odebench.testing)."""
        from .conformance import TorchConformance

        return TorchConformance(registry)

    def trainer(self, problem, odeint: Optional[BoundOdeint], device: str) -> "TorchTrainer":
        return TorchTrainer(self, problem, odeint, device)


class TorchTrainer:
    """loss.backward() + optimizer, with forward and backward timed separately after a sync."""

    def __init__(self, runtime: TorchRuntime, problem, odeint: Optional[BoundOdeint], device: str) -> None:
        self.runtime, self.problem, self.odeint, self.device = runtime, problem, odeint, device
        name, kwargs = problem.optimizer
        try:
            cls = OPTIMIZERS[name]
        except KeyError:
            raise InvalidInputError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}") from None
        kwargs = dict(kwargs)
        milestones, gamma = kwargs.pop("milestones", None), kwargs.pop("gamma", 0.1)
        self.optimizer = cls(problem.model.parameters(), **kwargs)
        # the learning rate times gamma at each milestone (iterations), as torch's MultiStepLR
        self.scheduler = (torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(milestones), gamma)
                          if milestones else None)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.problem.model.parameters() if p.requires_grad)

    def step(self, iteration: int, probe_memory: bool = False) -> StepResult:
        """One step: forward (the loss) and backward timed apart, clocks read after a sync.

        Probed: the allocator's peak over forward and backward, and the bytes the graph holds
        for backward read between them; the probes cost time, so the step says it was probed."""
        sync = self.runtime.synchronize
        batch = self.problem.batch(iteration)
        self.optimizer.zero_grad(set_to_none=True)
        peak = PeakAllocated(self.device) if probe_memory else contextlib.nullcontext()
        held_bytes = None
        with peak:
            sync(self.device)
            t0 = time.perf_counter()
            loss = self.problem.loss(batch, self.odeint)
            sync(self.device)
            t1 = time.perf_counter()
            if probe_memory:
                held_bytes = held_for_backward(loss)
            t_backward = time.perf_counter()
            loss.backward()
            sync(self.device)
            t2 = time.perf_counter()
        value = float(loss.detach())
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return StepResult(value, t1 - t0, t2 - t_backward,
                          peak_memory_bytes=peak.bytes if probe_memory else None,
                          held_for_backward_bytes=held_bytes, probed=probe_memory)

    def evaluate(self, odeint: Optional[BoundOdeint]) -> float:
        """The task's metric, without building a graph (a task needing grads re-enables them)."""
        with torch.no_grad():
            return float(self.problem.evaluate(odeint))
