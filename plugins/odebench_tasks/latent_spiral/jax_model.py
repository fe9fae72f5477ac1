"""The ``latent-spiral`` task in JAX: the functions of ``.jax_nets`` on one cell's spirals.

Functional (see odebench_jax.trainer.JaxTrainer): ``model`` is the parameter dict (the torch
modules' state_dict keys and layouts, the same numpy initial values) and ``loss_fn(params,
batch, odeint)`` is pure, so the trainer jits it once per cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import jax_nets as nets
from .params import init_params
from .task import SpiralData


class SpiralProblem:
    framework = "jax"

    def __init__(self, options, *, seed: int, device: str, dtype: str, model: str) -> None:
        from odebench_jax import JaxRuntime, jax_device

        self.options, self.name = options, model
        self.dtype = JaxRuntime.resolve_dtype(dtype)
        self.device = jax_device(device)
        self.data = SpiralData(options, seed)
        self.model = {k: self._put(v) for k, v in init_params(model, seed, **options.sizes()).items()}
        self.optimizer = ("adam", {"lr": options.lr})
        self.train_times = self._put(self.data.train_times)
        self.eval_times = self._put(self.data.eval_times)
        self._predict: dict = {}

    def _put(self, array, dtype=None):
        return jax.device_put(jnp.asarray(np.asarray(array), dtype=dtype or self.dtype), self.device)

    def batch(self, iteration: int) -> dict:
        b = self.data.batch(iteration)
        return {k: self._put(v, jnp.int32 if k == "idx" else None) for k, v in b.items()}

    def loss_fn(self, params, batch: dict, odeint):
        sigma = self.options.sigma
        if self.name == "rnn":
            return nets.rnn_loss(params, batch["x"], batch["t"], batch["mask"], sigma)
        return nets.latent_ode_loss(params, batch["x"], batch["t"], batch["mask"], self.train_times, batch["idx"],
                                    batch["eps"], sigma, odeint)

    def loss(self, batch: dict, odeint):
        return self.loss_fn(self.model, batch, odeint)

    def _predictor(self, odeint):
        """The model's predictions on the test spirals, jitted once per odeint; its solves counted
        into ``odeint.stats`` after each call (odebench_jax.counted_jit)."""
        from odebench_jax import counted_jit

        key = id(odeint)
        if key not in self._predict:
            extrap_times = self._put(self.data.test.extrap_times)
            if self.name == "rnn":
                fn = jax.jit(lambda params, x, t: nets.rnn_predict(params, x, t, extrap_times))
            else:
                fn = counted_jit(lambda params, x, t, odeint: nets.latent_ode_predict(params, x, t, self.eval_times,
                                                                                      odeint), odeint)
            self._predict[key] = (odeint, fn)  # keep odeint alive so its id stays unique
        return self._predict[key][1]

    def evaluate(self, odeint) -> float:
        test = self.data.test
        out = self._predictor(odeint)(self.model, self._put(test.x_obs), self._put(test.obs_times))
        if self.name == "rnn":
            return self.data.score(np.asarray(out[0]), np.asarray(out[1]))
        pred = np.asarray(out)
        return self.data.score(np.take_along_axis(pred, test.obs_idx[:, :, None], axis=1), pred[:, test.window:])

    def extras(self) -> dict:
        return self.data.extras()

    def artifacts(self, odeint, out_dir, stem: str) -> list:
        return self.data.figure(out_dir, stem, f"latent-spiral {self.name}, n_obs={self.options.n_obs}")


class JaxLatentSpiral:
    def setup(self, options, *, seed: int, device: str = "cpu", dtype: str = "float32",
              model: str = "latent-ode") -> SpiralProblem:
        return SpiralProblem(options, seed=seed, device=device, dtype=dtype, model=model)
