"""The benchmarks' problems, each defined once under one name.

Every script, the asv suite (``asv_bench/``) and the pytest-benchmark micro-benchmarks
(``tests/benchmarks``) take their problems from here, so a figure in one can be set beside a
figure in another, and two problems never share a name.

=============  ====================================================================  ==========================
name           what                                                                  used by
=============  ====================================================================  ==========================
mlp            dy/dt = net(y), net = Linear(2,64)-tanh-Linear(64,64)-tanh-            torch_vs_torchdiffeq,
               Linear(64,2), weights and biases uniform +-1/sqrt(fan_in) (torch:      asv_bench/bench_mlp,
               nn.Linear's init under ``torch.manual_seed``; JAX: the same            tests/benchmarks
               distribution drawn in numpy, not the same numbers), batch 512,
               t = [0, 1], loss sum(y(1)^2)
mlp100         ``mlp`` with 100 output times on [0, 1], loss the mean of y(t)^2       torch_vs_torchdiffeq
odenet         one training iteration of the paper's MNIST ODE-Net (width 64,         torch_vs_torchdiffeq
               208,266 parameters), batch 128 of the offline digits, loss the
               cross-entropy; only the ODE block is the library's
latent         one training iteration of the latent-spiral task's latent ODE          torch_vs_torchdiffeq
               (its fast default), loss the negative ELBO
mlp-normal     the same architecture with weights *and biases* N(0, 1/fan_in)         jax_cost, jax_fixed_cost
               (numpy, seed 0), batch 512, t = [0, 1], loss sum(y(1)^2): the
               "mlp" of jax_cost's tables up to 2026-12-07
mlp-wide       ``mlp-normal`` with weights N(0, 6.25/fan_in) (scale 2.5): a stiffer   jax_cost
               field that takes several times the steps
cnf            the cnf task's dynamics with the exact trace, batch 512 of             jax_cost
               8gaussians, hidden 64, t = [0, 0.5], loss the mean NLL
odenet-small   the mnist task's ODE block at width 16 on the stem's features of 8    jax_cost
               digits, t = [0, 1], loss sum(y(1)^2) / batch: the "odenet" of
               jax_cost's tables up to 2026-12-07
=============  ====================================================================  ==========================

``mlp``..``latent`` are training problems for torch (``TORCH_PROBLEMS``: a loss through the
library's ``solve(func, y0, t)``, the vector field counted by ``tooling.EvalCounter``);
``mlp-normal``..``odenet-small`` are JAX solve problems (``solve_problem``: the field
``f(t, y, args)``, y0, args, the span and the loss of the solution's end, the same arrays for
odebench and diffrax).  Besides these, a task's problem at a small size (``task_problem``,
``TrainingStep``) is built by the task itself exactly as a grid cell builds it, so the asv
suite and the micro-benchmarks time what ``odebench run`` runs.

Nothing here imports torch or jax at module level: each builder imports its framework.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import numpy as np

from benchmarks.tooling import EvalCounter

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


# --------------------------------------------------------------------------- torch training problems


class MLPProblem:
    """The MLP dynamics on a batch of 512 points: loss = sum(y(1)^2)."""

    name = "mlp"
    description = f"MLP {ARCH}; batch {BATCH}; float32; t = [0, 1]; loss = sum(y(1)^2)"
    output = "y(1)"

    def __init__(self) -> None:
        import torch

        func, self.y0, self.t = torch_mlp(SEED, torch.float32)
        self.counter = EvalCounter()
        self.func = self.counter.torch_module(func)
        self.params = list(self.func.parameters())

    def loss(self, solve):
        """(loss, output) for one library's ``solve(func, y0, t)``."""
        y1 = solve(self.func, self.y0, self.t)[-1]
        return y1.pow(2).sum(), y1


class MLP100Problem(MLPProblem):
    """The MLP with 100 output times: interpolated in both libraries."""

    name = "mlp100"
    description = MLPProblem.description.replace("t = [0, 1]; loss = sum(y(1)^2)",
                                                 "100 output times on [0, 1]; loss = mean of y(t)^2 over them")
    output = "y(t)"

    def __init__(self) -> None:
        import torch

        super().__init__()
        self.t = torch.linspace(0.0, 1.0, 100, dtype=torch.float32)

    def loss(self, solve):
        ys = solve(self.func, self.y0, self.t)
        return ys.pow(2).mean(), ys


class ODENetProblem:
    """One training iteration of the MNIST ODE-Net: stem -> ODE block (the library) -> head -> CE."""

    name = "odenet"
    description = ("MNIST ODE-Net of Chen et al. (the mnist task's network, 208,266 parameters); batch 128 of the "
                   "offline digits; float32; ODE block over t = [0, 1]; loss = cross-entropy")
    output = "logits"

    def __init__(self) -> None:
        import torch
        from odebench_tasks.mnist.options import MNISTOptions
        from odebench_tasks.mnist.params import init_params
        from odebench_tasks.mnist.task import MNISTData
        from odebench_tasks.mnist.torch_nets import build, load_params

        self.net = build("odenet").to(torch.float32)
        load_params(self.net, init_params("odenet", SEED))
        self.counter = EvalCounter()
        self.func = self.counter.torch_module(self.net.odefunc)
        x, y = MNISTData(MNISTOptions(batch_size=128), SEED).batch(0)
        self.x, self.y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
        self.t = torch.tensor([0.0, 1.0], dtype=torch.float32)
        self.params = list(self.net.parameters())

    def loss(self, solve):
        import torch

        h = self.net.downsample(self.x)
        logits = self.net.head(solve(self.func, h, self.t)[-1])
        return torch.nn.functional.cross_entropy(logits, self.y), logits


class LatentProblem:
    """One training iteration of the latent ODE on the latent-spiral task's fast default."""

    name = "latent"
    description = ("latent ODE of the latent-spiral task (1,679 parameters; 300 spirals, 30 irregular "
                   "observations, solved at the window's 100 grid times); float32; loss = negative ELBO")
    output = "decoded observations"

    def __init__(self) -> None:
        import torch
        from odebench_tasks.latent_spiral import torch_nets as nets
        from odebench_tasks.latent_spiral.options import LatentSpiralOptions
        from odebench_tasks.latent_spiral.params import init_params
        from odebench_tasks.latent_spiral.task import SpiralData

        options = LatentSpiralOptions()
        self.nets, self.sigma = nets, options.sigma
        self.net = nets.build("latent-ode").to(torch.float32)
        nets.load_params(self.net, init_params("latent-ode", SEED))
        self.counter = EvalCounter()
        self.func = self.counter.torch_module(self.net.odefunc)
        data = SpiralData(options, SEED)
        batch = data.batch(0)
        self.x, self.t, self.eps, self.mask = (torch.as_tensor(batch[k], dtype=torch.float32)
                                               for k in ("x", "t", "eps", "mask"))
        self.idx = torch.as_tensor(batch["idx"])
        self.times = torch.as_tensor(data.train_times, dtype=torch.float32)
        self.params = list(self.net.parameters())

    def loss(self, solve):
        import torch

        nets = self.nets
        mean, logvar = nets.encode(self.net, self.x, self.t)
        z = solve(self.func, mean + torch.exp(0.5 * logvar) * self.eps, self.times)
        x_hat = nets.decode(self.net, z[self.idx, torch.arange(z.shape[1])[:, None]])
        elbo = nets.gaussian_loglik(self.x, x_hat, self.sigma, self.mask) - nets.kl_to_standard_normal(mean, logvar)
        return -elbo.mean(), x_hat


TORCH_PROBLEMS = {p.name: p for p in (MLPProblem, MLP100Problem, ODENetProblem, LatentProblem)}


# --------------------------------------------------------------------------- JAX solve problems


class SolveProblem(NamedTuple):
    """One solve to differentiate: ``loss(end)`` of the state at the span's end, ``end`` from
    solving ``field(t, y, args)`` from ``y0`` over ``span``."""

    field: Callable
    y0: object
    args: object
    span: tuple
    loss: Callable


def _mlp_normal(scale: float) -> SolveProblem:
    import jax.numpy as jnp

    rng = np.random.default_rng(SEED)
    widths = [STATE_DIM, HIDDEN, HIDDEN, STATE_DIM]
    params = tuple((jnp.asarray(rng.normal(0, scale / np.sqrt(i), (o, i)), jnp.float32),
                    jnp.asarray(rng.normal(0, scale / np.sqrt(i), (o,)), jnp.float32))
                   for i, o in zip(widths[:-1], widths[1:]))
    y0 = jnp.asarray(rng.standard_normal((BATCH, STATE_DIM)), jnp.float32)

    def field(t, y, p):  # autonomous: the MLP of ``jax_mlp``
        return jax_mlp(p, y)

    return SolveProblem(field, y0, params, (0.0, 1.0), lambda ys: jnp.sum(ys ** 2))


def _cnf_solve() -> SolveProblem:
    import jax.numpy as jnp
    from odebench_tasks.cnf.jax_model import standard_normal_logprob

    problem = task_problem("cnf", "jax", {"batch_size": "512", "hidden": "64"})
    x = problem.batch(0)["x"]
    y0 = (x, jnp.zeros((x.shape[0], 1), x.dtype))

    def loss(ys):
        z, logp = ys
        return -jnp.mean(standard_normal_logprob(z) - logp[:, 0])

    return SolveProblem(problem.dynamics, y0, (problem.model, None), (0.0, float(problem.times[-1])), loss)


def _odenet_small() -> SolveProblem:
    import jax.numpy as jnp
    from odebench_tasks.mnist import jax_nets

    problem = task_problem("mnist", "jax", {"width": "16", "n_blocks": "2", "batch_size": "8"})
    block_input = {}

    def take_block_input(func, y0, t, args=None):  # the network's own stem, stopped at its ODE block
        block_input["h"] = y0
        return y0[None]

    jax_nets.odenet_apply(problem.model, problem.batch(0)["x"], take_block_input)
    return SolveProblem(jax_nets.odefunc, block_input["h"], jax_nets.odefunc_args(problem.model), (0.0, 1.0),
                        lambda ys: jnp.sum(ys ** 2) / ys.shape[0])


SOLVE_PROBLEMS = {"mlp-normal": partial(_mlp_normal, 1.0), "mlp-wide": partial(_mlp_normal, 2.5), "cnf": _cnf_solve,
                  "odenet-small": _odenet_small}


def solve_problem(name: str) -> SolveProblem:
    """The JAX solve problem called ``name`` (one of ``SOLVE_PROBLEMS``), built afresh."""
    return SOLVE_PROBLEMS[name]()


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
