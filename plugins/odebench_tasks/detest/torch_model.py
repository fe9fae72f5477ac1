"""The ``detest`` task in torch: every selected problem solved eagerly under ``torch.no_grad``."""

from __future__ import annotations

import functools
import time

import torch

from .task import DetestProblem


def _rhs(rhs, t, y):
    return rhs(t.to(y.dtype), y, torch)


class DetestTorch(DetestProblem):
    framework = "torch"

    def __init__(self, options, *, device: str, dtype: str) -> None:
        from odebench_torch import TorchRuntime

        super().__init__(options)
        self.device = device
        dt = TorchRuntime.resolve_dtype(dtype)
        self.t = torch.tensor(self.times, dtype=dt, device=device)
        self.y0 = {p.name: torch.tensor(p.y0, dtype=dt, device=device) for p in self.problems}
        self.f = {p.name: functools.partial(_rhs, p.rhs) for p in self.problems}

    def timed_solve(self, odeint):
        from odebench_torch import TorchRuntime

        out, nfe = {}, {}
        TorchRuntime.synchronize(self.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            for p in self.problems:
                before = odeint.stats.nfe_forward
                out[p.name] = odeint(self.f[p.name], self.y0[p.name], self.t)
                nfe[p.name] = odeint.stats.nfe_forward - before
        TorchRuntime.synchronize(self.device)
        seconds = time.perf_counter() - t0
        return {k: v.double().cpu().numpy() for k, v in out.items()}, nfe, seconds, None


class TorchDetest:
    """The framework loader's target: ``setup`` builds one cell's problem."""

    @staticmethod
    def setup(options, *, seed: int, device: str, dtype: str) -> DetestTorch:
        return DetestTorch(options, device=device, dtype=dtype)
