"""The dtypes of a JAX solve: the control dtype of step-size control, and float64 on request."""

from __future__ import annotations

import jax
import numpy as np


def control_dtype():
    """float64 when jax_enable_x64 is on (as torch's Python-float controller), else float32."""
    return jax.dtypes.canonicalize_dtype(np.float64)



def enable_float64() -> None:
    """float64 in jax needs the x64 switch; turn it on (arrays made earlier keep their dtype)."""
    if not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
