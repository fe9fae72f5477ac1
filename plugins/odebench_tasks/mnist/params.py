"""Names, shapes and initial values of the MNIST networks' parameters, in numpy only.

The networks are those of Chen et al. 2018, Table 1 (torchdiffeq's ``examples/odenet_mnist.py``):
a downsampling stem (1x28x28 -> W x 6 x 6), then either one ODE block (``"odenet"``) or
``n_blocks`` pre-activation residual blocks (``"resnet"``), then a classification head.
The weights are drawn here, not by a framework, so torch and JAX start from identical numbers.

Names are exactly the torch modules' ``state_dict`` keys (``.torch_nets``), arrays in
torch's layouts (conv ``(out, in, kh, kw)``, linear ``(out, in)``), float64:

==============================================  ==========================================
``downsample.{0,3,6}.weight`` / ``.bias``       convs 1->W (3x3), W->W (4x4, stride 2) x 2
``downsample.{1,4}.weight`` / ``.bias``         GroupNorms of the stem
``odefunc.norm{1,2,3}.weight`` / ``.bias``      the ODE function's GroupNorms (odenet)
``odefunc.conv{1,2}.weight`` / ``.bias``        its 3x3 convs (W+1)->W, t channel first
``blocks.{i}.norm{1,2}.weight`` / ``.bias``     residual block i's GroupNorms (resnet)
``blocks.{i}.conv{1,2}.weight``                 its 3x3 convs W->W, no bias
``head.norm.weight`` / ``.bias``                the head's GroupNorm
``head.fc.weight`` / ``.bias``                  Linear(W, 10)
==============================================  ==========================================

Initial values follow torch's defaults: conv and linear weights and biases
U(-1/sqrt(fan_in), +1/sqrt(fan_in)) with fan_in = in_channels * kh * kw (in_features for a
Linear), drawn from ``np.random.default_rng((seed, 0))`` in the order of the names above;
GroupNorm weights 1 and biases 0 (no draws).
"""

from __future__ import annotations

import math

import numpy as np

from .._common.options import positive_int

MODELS = ("odenet", "resnet")
N_CLASSES = 10
WEIGHT_STREAM = 0

_ONES, _ZEROS = "ones", "zeros"


def norm_groups(channels: int) -> int:
    """GroupNorm's group count for ``channels``: min(32, channels), as in the reference."""
    return min(32, channels)


def validate(model: str, width, n_blocks) -> tuple[int, int]:
    """(width, n_blocks) as ints, or a ValueError naming what is allowed."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    width, n_blocks = positive_int("width", width), positive_int("n_blocks", n_blocks)
    if width % norm_groups(width):
        raise ValueError(f"width must be at most 32 or a multiple of 32 (GroupNorm groups); got {width}")
    return width, n_blocks


def _conv(name: str, c_out: int, c_in: int, k: int, bias: bool = True):
    bound = 1.0 / math.sqrt(c_in * k * k)
    yield f"{name}.weight", (c_out, c_in, k, k), bound
    if bias:
        yield f"{name}.bias", (c_out,), bound


def _norm(name: str, c: int):
    yield f"{name}.weight", (c,), _ONES
    yield f"{name}.bias", (c,), _ZEROS


def _layout(model: str, width: int, n_blocks: int):
    """(name, shape, init) in drawing order; init is a uniform bound or ``"ones"``/``"zeros"``."""
    w = width
    yield from _conv("downsample.0", w, 1, 3)
    yield from _norm("downsample.1", w)
    yield from _conv("downsample.3", w, w, 4)
    yield from _norm("downsample.4", w)
    yield from _conv("downsample.6", w, w, 4)
    if model == "odenet":
        yield from _norm("odefunc.norm1", w)
        yield from _conv("odefunc.conv1", w, w + 1, 3)
        yield from _norm("odefunc.norm2", w)
        yield from _conv("odefunc.conv2", w, w + 1, 3)
        yield from _norm("odefunc.norm3", w)
    else:
        for i in range(n_blocks):
            yield from _norm(f"blocks.{i}.norm1", w)
            yield from _conv(f"blocks.{i}.conv1", w, w, 3, bias=False)
            yield from _norm(f"blocks.{i}.norm2", w)
            yield from _conv(f"blocks.{i}.conv2", w, w, 3, bias=False)
    yield from _norm("head.norm", w)
    bound = 1.0 / math.sqrt(w)
    yield "head.fc.weight", (N_CLASSES, w), bound
    yield "head.fc.bias", (N_CLASSES,), bound


def param_shapes(model: str, width: int = 64, n_blocks: int = 6) -> dict[str, tuple]:
    """Every parameter's shape, in drawing order (= the torch module's state_dict order)."""
    width, n_blocks = validate(model, width, n_blocks)
    return {name: shape for name, shape, _ in _layout(model, width, n_blocks)}


def init_params(model: str, seed: int, width: int = 64, n_blocks: int = 6) -> dict[str, np.ndarray]:
    """The initial weights as float64 numpy arrays (see the module doc for the scheme)."""
    width, n_blocks = validate(model, width, n_blocks)
    rng = np.random.default_rng((int(seed), WEIGHT_STREAM))
    params: dict[str, np.ndarray] = {}
    for name, shape, init in _layout(model, width, n_blocks):
        if init == _ONES:
            params[name] = np.ones(shape)
        elif init == _ZEROS:
            params[name] = np.zeros(shape)
        else:
            params[name] = rng.uniform(-init, init, size=shape)
    return params


def n_params(model: str, width: int = 64, n_blocks: int = 6) -> int:
    """The number of scalar parameters (208,266 for odenet, 576,778 for resnet at the defaults)."""
    return sum(math.prod(shape) for shape in param_shapes(model, width, n_blocks).values())
