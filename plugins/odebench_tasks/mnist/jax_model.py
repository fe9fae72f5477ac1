"""The ``mnist`` task in JAX: the functions of ``.jax_nets`` on one cell's data.

The problem is functional (see odebench_jax.trainer.JaxTrainer): ``model`` is the parameter
dict (the torch modules' state_dict keys, torch's layouts, the same numpy initial values) and
``loss_fn(params, batch, odeint)`` is pure, so the trainer jits it once per cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .jax_nets import apply
from .params import init_params
from .task import MNISTData


def cross_entropy(logits, labels):
    """torch's F.cross_entropy: the mean negative log-softmax of the true class."""
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


class MNISTProblem:
    framework = "jax"

    def __init__(self, options, *, seed: int, device: str, dtype: str, model: str) -> None:
        from odebench_jax import JaxRuntime, jax_device

        self.dtype = JaxRuntime.resolve_dtype(dtype)
        self.device = jax_device(device)
        self.data = MNISTData(options, seed)
        self.name = model
        self.model = {k: self._put(v) for k, v in init_params(model, seed, options.width, options.n_blocks).items()}
        self.optimizer = self.data.optimizer()
        self._predict: dict = {}

    def _put(self, array, dtype=None):
        return jax.device_put(jnp.asarray(np.asarray(array), dtype=dtype or self.dtype), self.device)

    def batch(self, iteration: int) -> dict:
        x, y = self.data.batch(iteration)
        return {"x": self._put(x), "y": self._put(y, jnp.int32)}

    def loss_fn(self, params, batch: dict, odeint):
        return cross_entropy(apply(self.name, params, batch["x"], odeint), batch["y"])

    def loss(self, batch: dict, odeint):
        return self.loss_fn(self.model, batch, odeint)

    def _predictor(self, odeint):
        """argmax of the logits, jitted once per odeint; its solves counted into ``odeint.stats``
        after each call (odebench_jax.counted_jit)."""
        from odebench_jax import counted_jit

        key = id(odeint)
        if key not in self._predict:
            fn = counted_jit(lambda params, x, odeint: jnp.argmax(apply(self.name, params, x, odeint), axis=1), odeint)
            self._predict[key] = (odeint, fn)  # keep odeint alive so its id stays unique
        return self._predict[key][1]

    def evaluate(self, odeint) -> float:
        predict = self._predictor(odeint)
        wrong = sum(int(np.sum(np.asarray(predict(self.model, self._put(x))) != y)) for x, y in self.data.test_chunks())
        return self.data.error_pct(wrong)

    def extras(self) -> dict:
        return self.data.extras()

    def artifacts(self, odeint, out_dir, stem: str) -> list:
        return []


class JaxMNIST:
    def setup(self, options, *, seed: int, device: str = "cpu", dtype: str = "float32",
              model: str = "odenet") -> MNISTProblem:
        return MNISTProblem(options, seed=seed, device=device, dtype=dtype, model=model)
