"""Everything random in the ``cnf`` task, drawn in numpy so every framework gets the same numbers.

Streams (all ``numpy.random.default_rng`` with a tuple seed, so they never overlap):

* data:            ``data.make_split(dataset, n_train, n_test, seed)``
* initial weights: ``default_rng((seed, 0))``                -> ``init_params``
* batch indices:   ``default_rng((seed, 1, iteration))``     -> ``batch_indices``
* Hutchinson noise:``default_rng((seed, 2, iteration))``     -> ``hutchinson_noise``

Weights: the network is ``layers + 1`` concatsquash layers, widths
``2 -> hidden (x layers) -> 2``.  Layer ``i`` (``fan_in -> fan_out``) has, drawn in this order,

====================================  ===================  ============================
name                                  shape                distribution
====================================  ===================  ============================
``layers.{i}.layer.weight``           (fan_out, fan_in)    U(-1/sqrt(fan_in), +1/sqrt(fan_in))
``layers.{i}.layer.bias``             (fan_out,)           U(-1/sqrt(fan_in), +1/sqrt(fan_in))
``layers.{i}.hyper_gate.weight``      (fan_out, 1)         U(-1, 1)
``layers.{i}.hyper_gate.bias``        (fan_out,)           U(-1, 1)
``layers.{i}.hyper_bias.weight``      (fan_out, 1)         U(-1, 1)
====================================  ===================  ============================

i.e. torch's ``nn.Linear`` default scheme (bound 1/sqrt(fan_in); the time layers have
fan_in 1).  Weights are stored ``(out, in)`` as in torch (a jax model uses ``x @ W.T``); the
names are exactly the keys of the torch module's ``state_dict``.  Everything is float64.
"""

from __future__ import annotations

import numpy as np

WEIGHT_STREAM, BATCH_STREAM, NOISE_STREAM = 0, 1, 2


def layer_widths(options) -> list[int]:
    """[2, hidden, ..., hidden, 2] with ``options.layers`` hidden widths."""
    return [2] + [int(options.hidden)] * int(options.layers) + [2]


def init_params(options, seed: int) -> dict[str, np.ndarray]:
    """The initial weights of the CNF's network as float64 numpy arrays (see the module doc)."""
    rng = np.random.default_rng((int(seed), WEIGHT_STREAM))
    widths = layer_widths(options)
    params: dict[str, np.ndarray] = {}
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        bound = 1.0 / np.sqrt(fan_in)
        params[f"layers.{i}.layer.weight"] = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        params[f"layers.{i}.layer.bias"] = rng.uniform(-bound, bound, size=(fan_out,))
        params[f"layers.{i}.hyper_gate.weight"] = rng.uniform(-1.0, 1.0, size=(fan_out, 1))
        params[f"layers.{i}.hyper_gate.bias"] = rng.uniform(-1.0, 1.0, size=(fan_out,))
        params[f"layers.{i}.hyper_bias.weight"] = rng.uniform(-1.0, 1.0, size=(fan_out, 1))
    return params


def batch_indices(seed: int, iteration: int, n_train: int, batch_size: int) -> np.ndarray:
    """Indices of training batch ``iteration``: ``batch_size`` distinct rows of the training set."""
    rng = np.random.default_rng((int(seed), BATCH_STREAM, int(iteration)))
    return rng.choice(int(n_train), size=int(batch_size), replace=False)


def hutchinson_noise(seed: int, iteration: int, shape: tuple, noise: str) -> np.ndarray:
    """Hutchinson's probe vectors for one solve: standard normal or Rademacher (+-1), float64."""
    rng = np.random.default_rng((int(seed), NOISE_STREAM, int(iteration)))
    if noise == "gaussian":
        return rng.standard_normal(shape)
    if noise == "rademacher":
        return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
    raise ValueError(f"noise must be one of gaussian, rademacher; got {noise!r}")
