"""Initial weights into torch modules: every task draws its initial weights in numpy (the same
arrays for the torch and the JAX model of a cell) and copies them in with ``load_params``.
Imported only by the tasks' torch files, so registering the tasks still imports no torch."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def load_params(module: nn.Module, params: dict) -> None:
    """Copy numpy arrays (keys = the module's state_dict keys) into the module's parameters."""
    state = module.state_dict()
    missing, unexpected = sorted(set(state) - set(params)), sorted(set(params) - set(state))
    if missing or unexpected:
        raise ValueError(f"parameter names differ: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for name, value in params.items():
            target = state[name]
            if tuple(target.shape) != tuple(np.shape(value)):
                raise ValueError(f"{name}: shape {np.shape(value)} given, {tuple(target.shape)} expected")
            target.copy_(torch.as_tensor(np.asarray(value), dtype=target.dtype))
