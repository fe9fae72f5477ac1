"""The MNIST networks of Chen et al. 2018, Table 1, as pure JAX functions of a params dict.

``params`` has the keys of ``odebench_tasks.mnist.params`` (= the torch modules'
state_dict keys) with arrays in torch's layouts (conv OIHW, linear (out, in)); images are NCHW.
So the numpy weights of ``params.init_params`` go in unchanged and give torch's numbers.

The ODE function is the module-level ``odefunc`` with the backend's signature
``func(t, y, args)``: a single stable callable, so a jit cache keyed on the function's identity
is reused across calls.  Its ``args`` are the ODE function's own parameters with the
``"odefunc."`` prefix removed (``"norm1.weight"``, ``"conv1.weight"``, ...; see
``odefunc_args``), i.e. the keys of the torch ``ODEFunc``'s state_dict.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .params import MODELS, norm_groups

__all__ = ["group_norm", "conv2d", "odefunc", "odefunc_args", "odenet_apply", "resnet_apply", "apply"]

ODEFUNC_PREFIX = "odefunc."
_DIMENSION_NUMBERS = ("NCHW", "OIHW", "NCHW")


def group_norm(x, weight, bias, groups: int, eps: float = 1e-5):
    """torch's GroupNorm on NCHW: per sample and group, biased variance, then a per-channel affine."""
    n, c, h, w = x.shape
    g = x.reshape(n, groups, c // groups, h, w)
    mean = jnp.mean(g, axis=(2, 3, 4), keepdims=True)
    var = jnp.mean(jnp.square(g - mean), axis=(2, 3, 4), keepdims=True)
    y = ((g - mean) / jnp.sqrt(var + eps)).reshape(x.shape)
    return y * weight[None, :, None, None] + bias[None, :, None, None]


def conv2d(x, w, b=None, stride: int = 1, padding: int = 0):
    """torch's Conv2d (NCHW input, OIHW weight, symmetric padding); ``b`` None for no bias."""
    out = jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_DIMENSION_NUMBERS
    )
    return out if b is None else out + b[None, :, None, None]


def _norm(params, prefix: str, x):
    return group_norm(x, params[prefix + "weight"], params[prefix + "bias"], norm_groups(x.shape[1]))


def _conv(params, prefix: str, x, stride: int = 1, padding: int = 0):
    return conv2d(x, params[prefix + "weight"], params.get(prefix + "bias"), stride, padding)


def _concat_time(t, x):
    """[t, x] along channels: the reference's ConcatConv2d puts a constant t channel first."""
    return jnp.concatenate([jnp.ones_like(x[:, :1]) * jnp.asarray(t).astype(x.dtype), x], axis=1)


def odefunc(t, x, args):
    """dx/dt = GN -> ReLU -> ConcatConv -> GN -> ReLU -> ConcatConv -> GN (``args``: see module doc)."""
    out = _conv(args, "conv1.", _concat_time(t, jax.nn.relu(_norm(args, "norm1.", x))), padding=1)
    out = _conv(args, "conv2.", _concat_time(t, jax.nn.relu(_norm(args, "norm2.", out))), padding=1)
    return _norm(args, "norm3.", out)


def odefunc_args(params: dict) -> dict:
    """The ODE function's parameters from the full dict, keys without the ``"odefunc."`` prefix."""
    n = len(ODEFUNC_PREFIX)
    return {k[n:]: v for k, v in params.items() if k.startswith(ODEFUNC_PREFIX)}


def _downsample(params, x):
    """1x28x28 -> W x 26 x 26 -> 13 x 13 -> 6 x 6 (torch's ``downsample`` Sequential)."""
    h = jax.nn.relu(_norm(params, "downsample.1.", _conv(params, "downsample.0.", x)))
    h = jax.nn.relu(_norm(params, "downsample.4.", _conv(params, "downsample.3.", h, 2, 1)))
    return _conv(params, "downsample.6.", h, 2, 1)


def _head(params, h):
    """norm -> ReLU -> global average pool -> Linear: logits [n, 10]."""
    pooled = jnp.mean(jax.nn.relu(_norm(params, "head.norm.", h)), axis=(2, 3))
    return pooled @ params["head.fc.weight"].T + params["head.fc.bias"]


def odenet_apply(params: dict, x, odeint):
    """Logits of the ODE-Net; ``odeint(func, y0, t, args=None)`` is the backend's, solver bound."""
    h = _downsample(params, x)
    times = jnp.asarray([0.0, 1.0], h.dtype)
    return _head(params, odeint(odefunc, h, times, args=odefunc_args(params))[-1])


def _n_blocks(params: dict) -> int:
    return sum(1 for k in params if k.startswith("blocks.") and k.endswith(".norm1.weight"))


def resnet_apply(params: dict, x, odeint=None):
    """Logits of the ResNet baseline (block count read from the keys); ``odeint`` is ignored."""
    h = _downsample(params, x)
    for i in range(_n_blocks(params)):
        p = f"blocks.{i}."
        out = _conv(params, p + "conv1.", jax.nn.relu(_norm(params, p + "norm1.", h)), padding=1)
        h = h + _conv(params, p + "conv2.", jax.nn.relu(_norm(params, p + "norm2.", out)), padding=1)
    return _head(params, h)


def apply(model: str, params: dict, x, odeint=None):
    """``odenet_apply`` or ``resnet_apply`` by name (the odenet needs ``odeint``)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    if model == "odenet":
        if odeint is None:
            raise ValueError("model 'odenet' needs an odeint(func, y0, t, args=None)")
        return odenet_apply(params, x, odeint)
    return resnet_apply(params, x)
