"""Presenting a solve's inputs to the torch integrator: times as floats, a tuple state as one tensor.

The integrator works on a single tensor; a tuple state such as the CNF's (z, logp) is
flattened into one vector and the user's function is wrapped to see the tuple.  The checks and
their messages are odebench.solve's (shared with JAX); checks that cost a tensor operation run
once per call (inputs) or once per function (first output).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from odebench.errors import InvalidInputError, NonFiniteStateError
from odebench.solve import check_outputs, check_state, check_times, slices_of


def times_of(t) -> list[float]:
    """The requested output times as floats (checked: 1-D, finite, strictly monotonic)."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    return check_times(tuple(t.shape), t.detach().cpu().reshape(-1).tolist())


class FlatState:
    """Maps a tensor or tuple of tensors to one tensor and back."""

    def __init__(self, y0) -> None:
        self.is_tuple = isinstance(y0, (tuple, list))
        parts = tuple(y0) if self.is_tuple else (y0,)
        check_state(parts, lambda p: isinstance(p, torch.Tensor), lambda p: p.is_floating_point())
        if len({p.device for p in parts}) > 1:
            raise InvalidInputError("all tensors of a tuple y0 must share one device")
        self.parts = parts
        self.shapes = [p.shape for p in parts]
        self.sizes = [p.numel() for p in parts]
        self.dtype = parts[0].dtype
        self.device = parts[0].device

    @property
    def slices(self) -> Optional[list[tuple[int, int]]]:
        """Per-tensor slices of the flat state (for a mixed norm); None for a single tensor."""
        return slices_of(self.sizes) if self.is_tuple else None

    def flatten(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        if not self.is_tuple:
            return parts[0]
        return torch.cat([p.reshape(-1) for p in parts])

    def unflatten(self, flat: torch.Tensor) -> tuple:
        if not self.is_tuple:
            return (flat,)
        return tuple(x.view(shape) for x, shape in zip(flat.split(self.sizes), self.shapes))

    def unflatten_trajectory(self, ys: torch.Tensor):
        """[T, *flat shape] -> the user's layout: a tensor [T, ...] or a tuple of them."""
        if not self.is_tuple:
            return ys
        T = ys.shape[0]
        return tuple(x.reshape(T, *shape) for x, shape in zip(ys.split(self.sizes, dim=1), self.shapes))


def wrap_function(func: Callable, state: FlatState, counter: list) -> Callable:
    """f(t: float, y_flat) -> dy_flat, counting calls in counter[0] and checking the first output."""
    dtype, device = state.dtype, state.device
    checked = [False]

    def f(t: float, y: torch.Tensor) -> torch.Tensor:
        counter[0] += 1
        tt = torch.tensor(t, dtype=dtype, device=device)
        out = func(tt, state.unflatten(y) if state.is_tuple else y)
        if not checked[0]:
            check_outputs(out, state.shapes, dtype, state.is_tuple, lambda o: isinstance(o, torch.Tensor))
            checked[0] = True
        return state.flatten(out) if state.is_tuple else out

    return f


def check_finite(y: torch.Tensor) -> None:
    with torch.no_grad():
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteStateError("non-finite value (nan/inf) in y0")
