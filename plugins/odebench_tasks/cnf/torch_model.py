"""The ``cnf`` task in PyTorch: FFJORD's continuous normalizing flow on a 2-D toy density.

The flow maps a data point x at t = 0 to the base variable z(T) by dz/dt = f(t, z), with f a
stack of FFJORD's concatsquash layers.  Along a trajectory the instantaneous change of
variables (Chen et al. 2018, Thm. 1) gives

    d log p_t(z(t)) / dt = -tr(df/dz(t, z(t))).

We integrate the augmented state (z, l) from (x, 0) with dl/dt = -tr(df/dz), so

    l(T) = int_0^T -tr(df/dz) dt = log p_T(z(T)) - log p_0(x),

and with p_T the base N(0, I) and p_0 the model density of the data:

    log p(x) = log N(z(T); 0, I) - l(T) = log N(z(T); 0, I) + int_0^T tr(df/dz) dt.

The trace is exact (sum over the 2 coordinates of d f_i / d z_i, one vector-Jacobian product
each) or Hutchinson's estimator eps^T (df/dz) eps with one eps per solve (Grathwohl et al.
2019).  Training losses are differentiated through the trace (create_graph), so a gradient
method must differentiate the dynamics twice; evaluation always uses the exact trace.

All random numbers (data, initial weights, batches, Hutchinson noise) come from numpy
(see ``odebench_tasks.cnf.init``), so the JAX version sees the same ones.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from .._common.torch_weights import load_params
from .data import density_figure, make_split
from .init import batch_indices, hutchinson_noise, init_params, layer_widths
from .options import ACTIVATIONS, TRACES, CNFOptions

DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: The density figure's grid (GRID_SIZE^2 points, as many as the data panel's 100 x 100 bins)
#: and the points per solve when integrating it.
GRID_SIZE = 100
GRID_CHUNK = 10_000


# --------------------------------------------------------------------------- traces


def _grad(out: torch.Tensor, z: torch.Tensor, weights: torch.Tensor, create_graph: bool) -> torch.Tensor:
    (g,) = torch.autograd.grad(out, z, weights, create_graph=create_graph, retain_graph=True, allow_unused=True)
    return torch.zeros_like(z) if g is None else g


def exact_trace(dz: torch.Tensor, z: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """tr(d dz / d z) per sample, shape (n,): one vector-Jacobian product per dimension."""
    trace = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    for i in range(z.shape[1]):
        trace = trace + _grad(dz[:, i], z, torch.ones_like(dz[:, i]), create_graph)[:, i]
    return trace


def hutchinson_trace(dz: torch.Tensor, z: torch.Tensor, eps: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Hutchinson's unbiased estimate eps^T (d dz / d z) eps per sample, shape (n,): one vjp."""
    if eps is None or eps.shape != z.shape:
        raise ValueError(
            f"Hutchinson's trace needs eps of the state's shape {tuple(z.shape)}, "
            f"got {None if eps is None else tuple(eps.shape)}; set dynamics.eps before the solve"
        )
    e_dzdz = _grad(dz, z, eps, create_graph)
    return (e_dzdz * eps).sum(dim=1)


class DivergenceODE(nn.Module):
    """Augments a vector field ``velocity(t, z)`` with its negative divergence.

    ``forward(t, (z, logp)) -> (dz, -tr(d dz / dz))``, logp of shape (n, 1).  The Jacobian is
    taken under ``torch.enable_grad()``, so this also works inside ``torch.no_grad()`` (and in
    the adjoint's gradient-free forward solve); the trace keeps its graph (create_graph) only
    when grad mode was on at the call, i.e. when a loss will be differentiated through it.
    ``trace`` is ``"exact"`` or ``"hutchinson"``; for the latter set ``self.eps`` (shape of z)
    before each solve -- it is held fixed over the solve.
    """

    def __init__(self, trace: str = "exact") -> None:
        super().__init__()
        if trace not in TRACES:
            raise ValueError(f"trace must be one of {', '.join(TRACES)}; got {trace!r}")
        self.trace = trace
        self.eps: Optional[torch.Tensor] = None

    def velocity(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @contextlib.contextmanager
    def trace_mode(self, trace: str):
        """Temporarily use another trace (e.g. ``"exact"`` for evaluation)."""
        if trace not in TRACES:
            raise ValueError(f"trace must be one of {', '.join(TRACES)}; got {trace!r}")
        previous, self.trace = self.trace, trace
        try:
            yield self
        finally:
            self.trace = previous

    def forward(self, t: torch.Tensor, state):
        z = state[0]
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            # without grad mode, z may still require grad (a view of a y0 that does, made under
            # no_grad) yet have no graph: the trace would silently be 0.  Take a fresh leaf.
            if not create_graph or not z.requires_grad:
                z = z.detach().requires_grad_(True)
            dz = self.velocity(t, z)
            if self.trace == "exact":
                trace = exact_trace(dz, z, create_graph)
            else:
                trace = hutchinson_trace(dz, z, self.eps, create_graph)
        if not create_graph:
            dz, trace = dz.detach(), trace.detach()
        return dz, -trace.unsqueeze(1)


# --------------------------------------------------------------------------- network


class ConcatSquashLinear(nn.Module):
    """FFJORD's layer: ``Linear(x) * sigmoid(hyper_gate(t)) + hyper_bias(t)``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.layer = nn.Linear(dim_in, dim_out)
        self.hyper_gate = nn.Linear(1, dim_out)
        self.hyper_bias = nn.Linear(1, dim_out, bias=False)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.reshape(1, 1).to(x.dtype)
        return self.layer(x) * torch.sigmoid(self.hyper_gate(tt)) + self.hyper_bias(tt)


_ACTIVATIONS = {"tanh": torch.tanh, "softplus": nn.functional.softplus, "relu": torch.relu, "elu": nn.functional.elu}
assert tuple(_ACTIVATIONS) == ACTIVATIONS


class CNFDynamics(DivergenceODE):
    """Concatsquash layers ``widths[0] -> ... -> widths[-1]`` with ``activation`` between them."""

    def __init__(self, widths, activation: str = "tanh", trace: str = "exact") -> None:
        super().__init__(trace)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        self.activation = activation
        self._act = _ACTIVATIONS[activation]
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    @classmethod
    def from_options(cls, options: CNFOptions) -> "CNFDynamics":
        return cls(layer_widths(options), options.activation, options.trace)

    def velocity(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = z
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i < last:
                h = self._act(h)
        return h


def standard_normal_logprob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row, shape (n,)."""
    return -0.5 * (z.shape[1] * math.log(2.0 * math.pi) + (z * z).sum(dim=1))


def _standard_normal_nll_np(x: np.ndarray) -> float:
    return float(np.mean(0.5 * (x.shape[1] * math.log(2.0 * math.pi) + (x * x).sum(axis=1))))


# --------------------------------------------------------------------------- the task


class CNFProblem:
    """One cell of the ``cnf`` task (the TaskProblem protocol of odebench.specs)."""

    def __init__(self, options: CNFOptions, *, seed: int, device: str, dtype: str) -> None:
        if not isinstance(options, CNFOptions):
            raise TypeError(f"options must be CNFOptions, got {type(options).__name__}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
        self.options = options
        self.seed = int(seed)
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.train_np, self.test_np = make_split(options.dataset, options.n_train, options.n_test, self.seed)
        self.train = torch.as_tensor(self.train_np, dtype=self.dtype, device=self.device)
        self.test = torch.as_tensor(self.test_np, dtype=self.dtype, device=self.device)
        self.model = CNFDynamics.from_options(options).to(device=self.device, dtype=self.dtype)
        load_params(self.model, init_params(options, self.seed))  # after .to: float64 stays exact
        self.optimizer = ("adam", {"lr": options.lr})
        self.times = torch.tensor([0.0, options.T], dtype=self.dtype, device=self.device)
        self._iteration = 0

    # -- data

    def batch(self, iteration: int) -> torch.Tensor:
        """Training batch ``iteration`` (same seed and iteration -> same rows, any backend)."""
        self._iteration = int(iteration)  # keys the Hutchinson noise of the next loss
        idx = batch_indices(self.seed, iteration, self.options.n_train, self.options.batch_size)
        return self.train[torch.as_tensor(idx, device=self.device)]

    # -- model

    def log_density(self, x: torch.Tensor, odeint: Callable) -> torch.Tensor:
        """log p(x) per row: one solve of (z, logp) from (x, 0) over [0, T] (see the module doc)."""
        # logp(T) = int_0^T -tr(df/dz) dt = log p_T(z_T) - log p_0(x)  (change of variables), so
        # log p_0(x) = log N(z_T; 0, I) - logp(T).
        zeros = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
        zs, logps = odeint(self.model, (x, zeros), self.times)
        return standard_normal_logprob(zs[-1]) - logps[-1].squeeze(1)

    def loss(self, batch: torch.Tensor, odeint: Callable) -> torch.Tensor:
        """Mean negative log-likelihood (nats) of the batch, with the training trace."""
        if self.model.trace == "hutchinson":
            eps = hutchinson_noise(self.seed, self._iteration, tuple(batch.shape), self.options.noise)
            self.model.eps = torch.as_tensor(eps, dtype=batch.dtype, device=batch.device)
        return -self.log_density(batch, odeint).mean()

    def _log_density_chunks(self, x: torch.Tensor, odeint: Callable, chunk: int) -> torch.Tensor:
        with torch.no_grad(), self.model.trace_mode("exact"):
            return torch.cat([self.log_density(part, odeint) for part in x.split(chunk)])

    def evaluate(self, odeint: Callable) -> float:
        """Test NLL in nats (exact trace), mean over the test set."""
        logp = self._log_density_chunks(self.test, odeint, self.options.eval_batch_size)
        return float(-logp.double().mean())

    def extras(self) -> dict:
        return {"baseline_metric": _standard_normal_nll_np(self.test_np)}

    def artifacts(self, odeint: Callable, out_dir, stem: str) -> list:
        """``<out_dir>/<stem>-density.png``: the training data beside the learned density."""

        def log_density(points: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(points, dtype=self.dtype, device=self.device)
            return self._log_density_chunks(x, odeint, GRID_CHUNK).double().cpu().numpy()

        path = Path(out_dir) / f"{stem}-density.png"
        title = f"cnf {self.options.dataset}"
        return [density_figure(self.train_np, log_density, path, title, grid_size=GRID_SIZE)]


class TorchCNF:
    """The torch implementation loader's product: ``setup(options, seed=, device=, dtype=)``."""

    framework = "torch"

    def setup(self, options: CNFOptions, *, seed: int, device: str = "cpu", dtype: str = "float32") -> CNFProblem:
        return CNFProblem(options, seed=seed, device=device, dtype=dtype)
