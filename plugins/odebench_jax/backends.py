"""The JAX gradient methods by name: the registration's target (see the plugin's ``__init__``)."""

from __future__ import annotations

from .adjoint import AdjointBackend
from .backprop import BackpropBackend
from .base import JaxBackend


def build_backend(method: str, name: str) -> JaxBackend:
    """The backend of one gradient method (see the plugin's registration)."""
    if method == "backprop":
        return BackpropBackend(name)
    return AdjointBackend(name, seminorm=(method == "adjoint-seminorm"))
