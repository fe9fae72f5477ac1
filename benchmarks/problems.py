"""The benchmarks' problems and machine description, defined once.

Used by the comparison scripts (``torch_vs_torchdiffeq``, ``jax_cost``, ``peer_overhead``),
the asv suite (``asv_bench/``) and the pytest-benchmark micro-benchmarks (``tests/benchmarks``),
so a figure in one can be set beside a figure in another.

* The MLP dynamics ``dy/dt = net(y)``, net = Linear(2,64)-tanh-Linear(64,64)-tanh-Linear(64,2)
  (autonomous), on a batch of 512 points, t = [0, 1], loss = sum(y(1)^2).  torch draws its
  weights with ``torch.manual_seed(seed)`` and nn.Linear's default init, JAX from numpy with the
  same distribution (uniform +-1/sqrt(fan_in)); the two are not the same numbers (each
  framework's benchmark has kept its own since it was first published).
* A task's problem at a small size (``task_problem``), built by the task itself exactly as a
  grid cell builds it, so the asv suite and the micro-benchmarks time what ``odebench run`` runs.

Nothing here imports torch or jax at module level: each builder imports its framework.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

STATE_DIM = 2
HIDDEN = 64
BATCH = 512
SEED = 0
ARCH = f"Linear({STATE_DIM},{HIDDEN})-tanh-Linear({HIDDEN},{HIDDEN})-tanh-Linear({HIDDEN},{STATE_DIM}), autonomous"

#: Small options of each task: one step takes well under a second on 2 CPU cores.
SMALL_TASK_OPTIONS = {
    "cnf": {"batch_size": "128", "hidden": "32", "n_test": "256"},
    "mnist": {"width": "16", "n_blocks": "2", "batch_size": "32"},
    "latent-spiral": {"n_train": "40", "n_test": "20", "batch_size": "20", "window": "40", "n_extrap": "30",
                      "n_obs": "12"},
}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(*packages: str) -> dict:
    """What a benchmark figure was measured on: CPU, cores, the framework's threads or device,
    and the version of odebench and of each named package."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {"cpu": _cpu_name(), "cores": f"{os.cpu_count()} logical, {usable} usable"}
    if "torch" in sys.modules:
        info["torch threads"] = sys.modules["torch"].get_num_threads()
    if "jax" in sys.modules:
        info["jax device"] = str(sys.modules["jax"].devices()[0])
    for package in packages:
        info[package] = _version(package)
    info.update({"odebench": _version("odebench"), "python": platform.python_version(),
                 "platform": platform.platform()})
    if "jax" in sys.modules:
        info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "(unset)")
    return info


def machine_lines(info: dict) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in info.items())


# --------------------------------------------------------------------------- the MLP, torch


def torch_mlp(seed: int = SEED, dtype=None):
    """(func, y0, t): the MLP as an nn.Module ``func(t, y)``, a batch of 512 start points, [0, 1]."""
    import torch
    from torch import nn

    dtype = dtype or torch.float32
    torch.manual_seed(seed)

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(STATE_DIM, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(),
                                     nn.Linear(HIDDEN, STATE_DIM))

        def forward(self, t, y):
            return self.net(y)

    func = MLP().to(dtype)
    y0 = torch.randn(BATCH, STATE_DIM, dtype=dtype)
    return func, y0, torch.tensor([0.0, 1.0], dtype=dtype)


# --------------------------------------------------------------------------- the MLP, JAX


def jax_mlp_params(seed: int = SEED, dtype=None) -> tuple:
    """(params, y0): the MLP's weights ((w, b) per layer, w of shape (out, in)) and start points."""
    import jax.numpy as jnp
    import numpy as np

    dtype = dtype or jnp.float32
    rng = np.random.default_rng(seed)
    widths = [STATE_DIM, HIDDEN, HIDDEN, STATE_DIM]
    params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        b = rng.uniform(-bound, bound, size=(fan_out,))
        params.append((jnp.asarray(w, dtype), jnp.asarray(b, dtype)))
    y0 = jnp.asarray(rng.standard_normal((BATCH, STATE_DIM)), dtype)
    return tuple(params), y0


def jax_mlp(params, y):
    import jax.numpy as jnp

    (w1, b1), (w2, b2), (w3, b3) = params
    h = jnp.tanh(y @ w1.T + b1)
    h = jnp.tanh(h @ w2.T + b2)
    return h @ w3.T + b3


# --------------------------------------------------------------------------- the tasks


def task_problem(task: str, framework: str, options: dict | None = None, seed: int = SEED,
                 dtype: str = "float32", registry=None):
    """The task's problem for one cell, built by the task as the harness builds it (default
    model, the task's options with ``options`` over them: ``SMALL_TASK_OPTIONS`` by default)."""
    from odebench.grid import build_task_options
    from odebench.plugins import make_registry

    reg = registry or make_registry()
    spec = reg.get("task", task).spec
    chosen = SMALL_TASK_OPTIONS.get(task, {}) if options is None else options
    built = build_task_options(spec, dict(chosen))
    reg.runtime(framework).seed(seed)
    return spec.build(framework, built, model=spec.default_model.name, seed=seed, device="cpu", dtype=dtype)


def _framework(backend: str, registry) -> str:
    return registry.get("backend", backend).spec.framework


def task_config(task: str, backend: str, solver: str, tol: float, steps: int = 3, options: dict | None = None):
    """The RunConfig of one small cell: the task's small options, no test-time sweep."""
    from odebench.grid import RunConfig

    chosen = SMALL_TASK_OPTIONS.get(task, {}) if options is None else options
    return RunConfig(tasks=[task], backends=[backend], solvers=[solver], tolerances=[(tol, tol)], steps=steps,
                     task_options=dict(chosen), eval_tolerances=[], device="cpu")


class TrainingStep:
    """One training step of a small cell's trainer, built as the harness builds it: call it to
    take the next step; ``stats`` holds the counts of every step taken."""

    def __init__(self, task: str, backend: str, solver: str, tol: float, options: dict | None = None) -> None:
        from odebench.grid import build_task_options, solver_options
        from odebench.plugins import make_registry
        from odebench.protocols import BoundOdeint
        from odebench.specs import SolveStats

        reg = make_registry()
        config = task_config(task, backend, solver, tol, options=options)
        spec = reg.get("task", task).spec
        framework = _framework(backend, reg)
        problem = task_problem(task, framework, config.task_options, registry=reg)
        opts = solver_options(config, reg, spec, solver, build_task_options(spec, config.task_options))
        self.stats = SolveStats()
        odeint = BoundOdeint(reg.backend(backend), solver, tol, tol, opts or None, self.stats)
        self.trainer = reg.runtime(framework).trainer(problem, odeint, "cpu")
        self.iteration = 0

    def __call__(self, probe_memory: bool = False):
        result = self.trainer.step(self.iteration, probe_memory=probe_memory)
        self.iteration += 1
        return result
