"""pytest-benchmark micro-benchmarks (not run by the default suite; see tests/conftest.py):

    pytest --benchmark-only tests/benchmarks [--benchmark-autosave] [--benchmark-compare]
           [--benchmark-compare-fail=mean:10%]

Each records its NFE (and memory where measured) in ``extra_info``, so a saved run shows
whether a slower figure comes with more work.  Problems: benchmarks/problems.py.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import odebench  # noqa: E402
from benchmarks.problems import TrainingStep, torch_mlp  # noqa: E402
from odebench_torch.memory import PeakAllocated  # noqa: E402


def _counts(stats) -> dict:
    return {"nfe_forward": stats.nfe_forward, "nfe_backward": stats.nfe_backward}


def test_rk4_step_of_the_mlp(benchmark):
    """One rk4 step (4 evaluations) of the MLP through the public odeint: the cost of a step,
    the front door's checks included."""
    func, y0, t = torch_mlp()
    backend = odebench.backend("torch-backprop")
    with torch.no_grad():
        benchmark(backend.odeint, func, y0, t, solver="rk4", options={"step_size": 1.0})
    benchmark.extra_info.update(_counts(backend.last_stats))
    assert backend.last_stats.nfe_forward == 4


def test_adjoint_backward_segment(benchmark):
    """The adjoint's backward pass over one segment [0, 1] of the MLP at tol 1e-5: the forward
    solve is set-up, only loss.backward() is timed."""
    func, y0, t = torch_mlp()
    backend = odebench.backend("torch-adjoint")

    def forward():
        ys = backend.odeint(func, y0.clone().requires_grad_(True), t, solver="dopri5", rtol=1e-5, atol=1e-5)
        return ((ys[-1] ** 2).sum(),), {}

    benchmark.pedantic(lambda loss: loss.backward(), setup=forward, rounds=20, warmup_rounds=2)
    (loss,), _ = forward()
    with PeakAllocated("cpu") as peak:
        loss.backward()
    benchmark.extra_info.update(_counts(backend.last_stats), peak_backward_bytes=peak.bytes)
    assert backend.last_stats.nfe_backward > 0


@pytest.mark.parametrize("task, backend, options", [
    ("cnf", "torch-adjoint", None),
    ("mnist", "torch-adjoint", {"batch_size": "32"}),  # the paper's ODE-Net (width 64), batch 32
])
def test_training_step(benchmark, task, backend, options):
    """One forward+backward training step of the CNF and of the ODE-Net, as a grid cell takes it."""
    step = TrainingStep(task, backend, "dopri5", 1e-5 if task == "cnf" else 1e-3, options)
    probe = step(probe_memory=True)  # memory read once, outside the timed rounds
    step.stats.reset()
    benchmark.pedantic(step, rounds=10, warmup_rounds=1)
    rounds = 11
    benchmark.extra_info.update({k: v / rounds for k, v in _counts(step.stats).items()},
                                peak_memory_bytes=probe.peak_memory_bytes,
                                held_for_backward_bytes=probe.held_for_backward_bytes)
    assert step.stats.nfe_forward > 0 and probe.peak_memory_bytes > 0
