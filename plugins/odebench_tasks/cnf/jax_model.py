"""The ``cnf`` task in JAX: the same flow, data, weights, batches and noise as ``torch_model``.

The flow maps a data point x at t = 0 to the base variable z(T) by dz/dt = f(t, z), with f a
stack of FFJORD's concatsquash layers, and integrates the augmented state (z, l) from (x, 0)
with dl/dt = -tr(df/dz), so that

    log p(x) = log N(z(T); 0, I) - l(T)

(see ``odebench_tasks.cnf.torch_model`` for the derivation).  Everything random (data,
initial weights, batch indices, Hutchinson noise) comes from the numpy functions of
``odebench_tasks.cnf.init`` and ``odebench_tasks.cnf.data``, so with the same seed the
torch and jax versions see the same numbers and start from the same loss.

The trace: f acts on each row of z separately, so one forward-mode product J v with the same
v in every row gives every sample's J v at once.  ``exact`` linearises f once and pushes the
d unit vectors through the linear map (``jax.linearize`` + ``vmap``: d Jacobian-vector
products, one per dimension, like torch's d vector-Jacobian products); ``hutchinson`` is
eps^T (J eps) with one eps per solve.  Training losses are differentiated through the trace.

The problem is functional (see ``odebench_jax.trainer.JaxTrainer`` for the interface):
``model`` is the parameter pytree -- a dict whose keys are the torch module's state_dict keys,
weights stored (out, in) as in torch -- and ``loss_fn(params, batch, odeint)`` is pure, so the
trainer jits it once per cell with params and batch as arguments.  A batch is a dict: ``x``
(the rows of the training set) and, for Hutchinson's trace, ``eps`` (its noise).  The backend's
odeint is called as ``odeint(func, (z, logp), t, args=(params, eps))`` with
``func(t, (z, logp), (params, eps)) -> (dz, dlogp)``; eps is None for the exact trace and is
held out of the gradient (stop_gradient) otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np

import jax
import jax.numpy as jnp

from .data import density_figure, make_split
from .init import batch_indices, hutchinson_noise, init_params, layer_widths
from .options import ACTIVATIONS, TRACES, CNFOptions

DTYPES = ("float32", "float64")

#: Points per solve when drawing the density figure (a 200 x 200 grid is 4 solves).
GRID_CHUNK = 10_000

_ACTIVATIONS = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "relu": jax.nn.relu, "elu": jax.nn.elu}
assert tuple(_ACTIVATIONS) == ACTIVATIONS


# --------------------------------------------------------------------------- traces


def exact_trace(velocity: Callable, z: jnp.ndarray):
    """(velocity(z), tr(d velocity / d z) per row): d Jacobian-vector products, shape (n,).

    ``velocity`` must act on each row of z independently (as the CNF's network does).
    """
    dz, jvp = jax.linearize(velocity, z)
    d = z.shape[1]
    basis = jnp.broadcast_to(jnp.eye(d, dtype=z.dtype)[:, None, :], (d,) + z.shape)
    columns = jax.vmap(jvp)(basis)  # columns[i, n] = J_n e_i
    return dz, jnp.einsum("ini->n", columns)


def hutchinson_trace(velocity: Callable, z: jnp.ndarray, eps: jnp.ndarray):
    """(velocity(z), eps^T (d velocity / d z) eps per row): one Jacobian-vector product."""
    if eps is None or tuple(eps.shape) != tuple(z.shape):
        raise ValueError(
            f"Hutchinson's trace needs eps of the state's shape {tuple(z.shape)}, "
            f"got {None if eps is None else tuple(eps.shape)}"
        )
    dz, jvp = jax.linearize(velocity, z)
    return dz, jnp.sum(jvp(eps) * eps, axis=1)


class DivergenceODE:
    """``func(t, (z, logp), (params, eps)) -> (dz, -tr(d dz / dz))`` for a row-wise velocity.

    ``velocity(t, z, params)``; ``estimator`` is ``"exact"`` or ``"hutchinson"`` (then eps, of
    z's shape, is fixed over the solve and receives no gradient).  Instances are plain
    callables, created once per problem, so jit and custom_vjp see a stable function.  (The
    attribute is not called ``trace``: ``jax.jit(obj)`` copies obj's ``__dict__`` onto the
    jitted function, whose ``.trace`` method it would shadow.)
    """

    def __init__(self, velocity: Callable, trace: str = "exact") -> None:
        if trace not in TRACES:
            raise ValueError(f"trace must be one of {', '.join(TRACES)}; got {trace!r}")
        self.velocity = velocity
        self.estimator = trace

    def __call__(self, t, state, args):
        params, eps = args
        z = state[0]

        def v(zz):
            return self.velocity(t, zz, params)

        if self.estimator == "exact":
            dz, trace = exact_trace(v, z)
        else:
            dz, trace = hutchinson_trace(v, z, None if eps is None else jax.lax.stop_gradient(eps))
        return dz, -trace[:, None]


# --------------------------------------------------------------------------- network


class CNFVelocity:
    """Concatsquash layers ``widths[0] -> ... -> widths[-1]``, ``activation`` between them.

    Layer i: ``(x @ W.T + b) * sigmoid(t * g_w + g_b) + t * h_w`` (FFJORD's ConcatSquashLinear,
    parameters named as in torch: layers.{i}.layer.weight/bias, layers.{i}.hyper_gate.weight/bias,
    layers.{i}.hyper_bias.weight).
    """

    def __init__(self, n_layers: int, activation: str = "tanh") -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        self.n_layers = int(n_layers)
        self.activation = activation
        self._act = _ACTIVATIONS[activation]

    def __call__(self, t, z, params):
        tt = jnp.asarray(t).astype(z.dtype)
        h = z
        for i in range(self.n_layers):
            p = f"layers.{i}."
            gate = jax.nn.sigmoid(tt * params[p + "hyper_gate.weight"][:, 0] + params[p + "hyper_gate.bias"])
            h = (h @ params[p + "layer.weight"].T + params[p + "layer.bias"]) * gate + tt * params[p + "hyper_bias.weight"][:, 0]
            if i < self.n_layers - 1:
                h = self._act(h)
        return h


def standard_normal_logprob(z: jnp.ndarray) -> jnp.ndarray:
    """log N(z; 0, I) per row, shape (n,)."""
    return -0.5 * (z.shape[1] * math.log(2.0 * math.pi) + jnp.sum(z * z, axis=1))


def _standard_normal_nll_np(x: np.ndarray) -> float:
    return float(np.mean(0.5 * (x.shape[1] * math.log(2.0 * math.pi) + (x * x).sum(axis=1))))


def _jax_device(device: str):
    if device == "cpu":
        return jax.devices("cpu")[0]
    head, _, index = device.partition(":")
    if head != "cuda":
        raise ValueError(f"device must be cpu, cuda or cuda:N; got {device!r}")
    return jax.devices("gpu")[int(index or 0)]


# --------------------------------------------------------------------------- the task


class CNFProblem:
    """One cell of the ``cnf`` task in jax (TaskProblem with functional params; see module doc)."""

    framework = "jax"

    def __init__(self, options: CNFOptions, *, seed: int, device: str, dtype: str) -> None:
        if not isinstance(options, CNFOptions):
            raise TypeError(f"options must be CNFOptions, got {type(options).__name__}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
        if dtype == "float64" and not jax.config.read("jax_enable_x64"):
            jax.config.update("jax_enable_x64", True)  # process-wide; float32 arrays stay float32
        self.options = options
        self.seed = int(seed)
        self.device = _jax_device(device)
        self.dtype = jnp.dtype(dtype)
        self.train_np, self.test_np = make_split(options.dataset, options.n_train, options.n_test, self.seed)
        self.model = {k: self._put(v) for k, v in init_params(options, self.seed).items()}
        self.optimizer = ("adam", {"lr": options.lr})
        self.times = self._put(np.array([0.0, options.T]))
        self.velocity = CNFVelocity(len(layer_widths(options)) - 1, options.activation)
        self.dynamics = DivergenceODE(self.velocity, options.trace)
        self.exact_dynamics = self.dynamics if options.trace == "exact" else DivergenceODE(self.velocity, "exact")
        self._eval_programs: dict = {}

    def _put(self, array) -> jnp.ndarray:
        return jax.device_put(jnp.asarray(np.asarray(array), dtype=self.dtype), self.device)

    # -- data

    def batch(self, iteration: int) -> dict:
        """Training batch ``iteration``: ``{"x"}`` (+ ``"eps"`` for Hutchinson), same rows and noise as torch."""
        idx = batch_indices(self.seed, iteration, self.options.n_train, self.options.batch_size)
        x = self.train_np[idx]
        batch = {"x": self._put(x)}
        if self.options.trace == "hutchinson":
            batch["eps"] = self._put(hutchinson_noise(self.seed, iteration, x.shape, self.options.noise))
        return batch

    # -- model

    def log_density(self, params, x, odeint: Callable, dynamics: Optional[DivergenceODE] = None, eps=None):
        """log p(x) per row: one solve of (z, logp) from (x, 0) over [0, T]."""
        dynamics = self.dynamics if dynamics is None else dynamics
        zeros = jnp.zeros((x.shape[0], 1), dtype=x.dtype)
        zs, logps = odeint(dynamics, (x, zeros), self.times, args=(params, eps))
        return standard_normal_logprob(zs[-1]) - logps[-1][:, 0]

    def loss_fn(self, params, batch: dict, odeint: Callable):
        """Mean negative log-likelihood (nats) of the batch with the training trace (pure, jittable)."""
        return -jnp.mean(self.log_density(params, batch["x"], odeint, self.dynamics, batch.get("eps")))

    def loss(self, batch: dict, odeint: Callable):
        """TaskProblem's loss: ``loss_fn`` at the current parameters ``self.model``."""
        return self.loss_fn(self.model, batch, odeint)

    def _eval_program(self, odeint: Callable):
        """log_density with the exact trace, jitted once per odeint; its solves counted into
        ``odeint.stats`` after each call (odebench_jax.counted_jit)."""
        from odebench_jax import counted_jit

        key = id(odeint)
        if key not in self._eval_programs:
            fn = counted_jit(lambda params, x, odeint: self.log_density(params, x, odeint, self.exact_dynamics), odeint)
            self._eval_programs[key] = (odeint, fn)  # keep odeint alive so its id stays unique
        return self._eval_programs[key][1]

    def _log_density_chunks(self, x: np.ndarray, odeint: Callable, chunk: int) -> np.ndarray:
        fn = self._eval_program(odeint)
        parts = [np.asarray(fn(self.model, self._put(x[i:i + chunk])), dtype=np.float64)
                 for i in range(0, x.shape[0], chunk)]
        return np.concatenate(parts)

    def evaluate(self, odeint: Callable) -> float:
        """Test NLL in nats (exact trace), mean over the test set."""
        logp = self._log_density_chunks(self.test_np, odeint, self.options.eval_batch_size)
        return float(-logp.mean())

    def extras(self) -> dict:
        return {"baseline_metric": _standard_normal_nll_np(self.test_np)}

    def artifacts(self, odeint: Callable, out_dir, stem: str) -> list:
        """``<out_dir>/<stem>-density.png``: the training data beside the learned density."""

        def log_density(points: np.ndarray) -> np.ndarray:
            return self._log_density_chunks(points, odeint, GRID_CHUNK)

        path = Path(out_dir) / f"{stem}-density.png"
        title = f"cnf {self.options.dataset}"
        return [density_figure(self.train_np, log_density, path, title)]


class JaxCNF:
    """The jax implementation loader's product: ``setup(options, seed=, device=, dtype=)``."""

    framework = "jax"

    def setup(self, options: CNFOptions, *, seed: int, device: str = "cpu", dtype: str = "float32") -> CNFProblem:
        return CNFProblem(options, seed=seed, device=device, dtype=dtype)
