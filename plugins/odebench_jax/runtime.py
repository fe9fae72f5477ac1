"""The JAX Runtime and Trainer (the contract of odebench.protocols).

The harness owns the loop and the bookkeeping; this module is the only place where jax is
driven on its behalf (the jax counterpart of ``odebench_torch.runtime``).  It needs no backend:
a model without an ODE trains here with odeint None.

Memory (``memory_kind``):

* GPU: ``jax_peak_bytes_in_use`` -- ``device.memory_stats()["peak_bytes_in_use"]`` read after
  the step.  XLA's allocator cannot reset its peak, so this is the high-water mark of the
  process so far (it includes earlier cells of the same run and the parameters and data).
* CPU: ``xla_temp_bytes`` -- ``temp_size_in_bytes`` of the compiled value-and-grad program's
  memory analysis (``jax.jit(f).lower(...).compile().memory_analysis()``): the scratch memory
  XLA plans for one training step's forward and backward, i.e. the activations kept for the
  backward pass plus the solver's working buffers.  Parameters, batch and outputs are not in
  it.  It is a static figure of the program (the same for every iteration of a cell).
"""

from __future__ import annotations

import random
from typing import Any, Optional

import numpy as np

import jax
import jax.numpy as jnp

from odebench.errors import InvalidInputError
from odebench.protocols import BoundOdeint

from .dtypes import enable_float64
from .trainer import JaxTrainer

DTYPES = ("float32", "float64")
OPTIMIZERS = ("adam", "adamw", "sgd")


def _gpus() -> list:
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:  # no GPU backend in this jaxlib
        return []


def _gpu_index(device: str) -> int:
    if device == "cuda":
        return 0
    head, _, index = device.partition(":")
    if head != "cuda" or not index.isdigit():
        raise InvalidInputError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N, auto")
    return int(index)


def jax_device(device: str):
    """The jax Device for a resolved device string ("cpu", "cuda", "cuda:N")."""
    if device == "cpu":
        return jax.devices("cpu")[0]
    gpus = _gpus()
    index = _gpu_index(device)
    if index >= len(gpus):
        raise InvalidInputError(
            f"--device {device} asked for, but jax {jax.__version__} sees "
            f"{'no GPU' if not gpus else f'only {len(gpus)} GPU(s)'}; use cpu or auto"
        )
    return gpus[index]



class JaxRuntime:
    framework = "jax"

    @staticmethod
    def resolve_device(device: str) -> str:
        if device == "auto":
            return "cuda" if _gpus() else "cpu"
        if device == "cpu":
            return device
        if device.startswith("cuda"):
            index = _gpu_index(device)
            gpus = _gpus()
            if not gpus:
                raise InvalidInputError(f"--device {device} asked for, but jax {jax.__version__} sees no GPU; use cpu or auto")
            if index >= len(gpus):
                raise InvalidInputError(
                    f"--device {device} asked for, but jax {jax.__version__} sees only {len(gpus)} GPU(s)"
                )
            return device
        raise InvalidInputError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N, auto")

    @staticmethod
    def resolve_dtype(dtype: str):
        """jnp.float32 or jnp.float64; float64 switches jax's x64 mode on (process-wide)."""
        if dtype == "float32":
            return jnp.float32
        if dtype == "float64":
            enable_float64()
            return jnp.float64
        raise InvalidInputError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")

    @staticmethod
    def seed(seed: int) -> None:
        """Seed Python's and numpy's global generators (jax has no global random state;
        tasks draw their numbers from numpy with the cell's seed)."""
        random.seed(seed)
        np.random.seed(seed % 2**32)

    @staticmethod
    def gpu_name(device: str) -> Optional[str]:
        return jax_device(device).device_kind if device.startswith("cuda") else None

    @staticmethod
    def memory_kind(device: str) -> str:
        return "jax_peak_bytes_in_use" if device.startswith("cuda") else "xla_temp_bytes"

    @staticmethod
    def synchronize(device: str, value: Any = None) -> None:
        """Wait for ``value`` (any pytree of arrays) and for pending host callbacks (a backend
        that counts by callbacks: the JAX peers).  jax dispatches asynchronously, so a clock is
        read only after this."""
        if value is not None:
            jax.block_until_ready(value)
        jax.effects_barrier()

    @staticmethod
    def conformance(registry):
        """The conformance kit's adapter for JAX backends (odebench.testing)."""
        from .conformance import JaxConformance

        return JaxConformance(registry)

    @staticmethod
    def device(device: str):
        """The jax Device of a resolved device string (the trainer puts its arrays there)."""
        return jax_device(device)

    @staticmethod
    def optimizer(name: str, kwargs: dict):
        """The optax transformation of a task's ``(name, kwargs)`` (see ``make_optimizer``)."""
        return make_optimizer(name, kwargs)

    def trainer(self, problem, odeint: Optional[BoundOdeint], device: str) -> JaxTrainer:
        return JaxTrainer(self, problem, odeint, device)


# --------------------------------------------------------------------------- optimizers


def make_optimizer(name: str, kwargs: dict):
    """An optax GradientTransformation from torch-style ``(name, kwargs)``.

    Same update rules and defaults as torch.optim: ``adam`` (lr, betas, eps, weight_decay as
    an L2 term added to the gradient), ``adamw`` (decoupled weight_decay, torch's default
    0.01), ``sgd`` (lr, momentum, nesterov, weight_decay).  ``learning_rate`` is accepted for
    ``lr``.  ``milestones`` (iterations) and ``gamma``: the learning rate times gamma at each
    milestone, as torch's MultiStepLR stepped once per iteration.
    """
    import optax

    if name not in OPTIMIZERS:
        raise InvalidInputError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    kw = dict(kwargs)
    if "learning_rate" in kw:
        kw["lr"] = kw.pop("learning_rate")
    allowed = {"adam": {"lr", "betas", "eps", "weight_decay"},
               "adamw": {"lr", "betas", "eps", "weight_decay"},
               "sgd": {"lr", "momentum", "nesterov", "weight_decay", "dampening"}}[name] | {"milestones", "gamma"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise InvalidInputError(f"optimizer {name!r}: unsupported option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    lr = learning_rate(float(kw.get("lr", 1e-3)), kw.get("milestones"), float(kw.get("gamma", 0.1)))
    wd = float(kw.get("weight_decay", 0.0))
    if name in ("adam", "adamw"):
        b1, b2 = kw.get("betas", (0.9, 0.999))
        eps = float(kw.get("eps", 1e-8))
        if name == "adamw":
            return optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=float(kw.get("weight_decay", 1e-2)))
        adam = optax.adam(lr, b1=b1, b2=b2, eps=eps)
        return optax.chain(optax.add_decayed_weights(wd), adam) if wd else adam
    if float(kw.get("dampening", 0.0)) != 0.0:
        raise InvalidInputError("optimizer 'sgd': dampening other than 0 is not supported in jax")
    momentum = float(kw.get("momentum", 0.0))
    sgd = optax.sgd(lr, momentum=momentum or None, nesterov=bool(kw.get("nesterov", False)))
    return optax.chain(optax.add_decayed_weights(wd), sgd) if wd else sgd


def learning_rate(lr: float, milestones, gamma: float):
    """``lr``, or torch's MultiStepLR as an optax schedule: update k (counted from 0) uses
    lr * gamma^(number of milestones <= k), which is optax's piecewise-constant rule with the
    milestones as boundaries (checked against torch in the tests)."""
    import optax

    if not milestones:
        return lr
    return optax.piecewise_constant_schedule(lr, {int(m): gamma for m in milestones})
