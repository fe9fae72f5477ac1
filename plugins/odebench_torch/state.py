"""Checking a solve's inputs and presenting tuple states to the integrator as one tensor.

The integrator works on a single tensor; a tuple state such as the CNF's (z, logp) is
flattened into one vector and the user's function is wrapped to see the tuple.  Checks that
cost a tensor operation run once per call (inputs) or once per function (first output).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from odebench.errors import InvalidInputError, NonFiniteStateError


def check_tolerance(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}")
    return x


def check_times(t) -> list[float]:
    """The requested output times as floats; they must be 1-D, finite and strictly monotonic."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    if t.ndim != 1 or t.numel() < 1:
        raise InvalidInputError(f"t must be a 1-D tensor of at least one time, got shape {tuple(t.shape)}")
    times = [float(x) for x in t.detach().cpu().tolist()]
    if not all(math.isfinite(x) for x in times):
        raise InvalidInputError("t must hold finite times (found nan/inf)")
    diffs = [b - a for a, b in zip(times, times[1:])]
    if diffs and not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
        raise InvalidInputError("t must be strictly increasing or strictly decreasing (no repeats)")
    return times


class FlatState:
    """Maps a tensor or tuple of tensors to one tensor and back."""

    def __init__(self, y0) -> None:
        self.is_tuple = isinstance(y0, (tuple, list))
        parts = tuple(y0) if self.is_tuple else (y0,)
        if not parts:
            raise InvalidInputError("y0 must be a tensor or a non-empty tuple of tensors")
        for p in parts:
            if not isinstance(p, torch.Tensor):
                raise InvalidInputError(f"y0 must be a tensor or a tuple of tensors, got {type(p).__name__}")
            if not p.is_floating_point():
                raise InvalidInputError(f"y0 must have a floating dtype (float32/float64), got {p.dtype}")
        dtypes = {p.dtype for p in parts}
        devices = {p.device for p in parts}
        if len(dtypes) > 1 or len(devices) > 1:
            raise InvalidInputError("all tensors of a tuple y0 must share one dtype and one device")
        self.parts = parts
        self.shapes = [p.shape for p in parts]
        self.sizes = [p.numel() for p in parts]
        self.dtype = parts[0].dtype
        self.device = parts[0].device

    @property
    def slices(self) -> Optional[list[tuple[int, int]]]:
        """Per-tensor slices of the flat state (for a mixed norm); None for a single tensor."""
        if not self.is_tuple:
            return None
        out, start = [], 0
        for n in self.sizes:
            out.append((start, start + n))
            start += n
        return out

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

    def check(out) -> None:
        outs = tuple(out) if state.is_tuple and isinstance(out, (tuple, list)) else (out,)
        if state.is_tuple and not isinstance(out, (tuple, list)):
            raise InvalidInputError(f"func must return a tuple of {len(state.shapes)} tensors like y0, got {type(out).__name__}")
        if len(outs) != len(state.shapes):
            raise InvalidInputError(f"func returned {len(outs)} tensors, y0 has {len(state.shapes)}")
        for i, (o, shape) in enumerate(zip(outs, state.shapes)):
            where = f" (element {i})" if state.is_tuple else ""
            if not isinstance(o, torch.Tensor):
                raise InvalidInputError(f"func must return tensors, got {type(o).__name__}{where}")
            if o.shape != shape:
                raise InvalidInputError(f"func returned shape {tuple(o.shape)}{where}, expected y0's shape {tuple(shape)}")
            if o.dtype != dtype:
                raise InvalidInputError(f"func returned dtype {o.dtype}{where}, expected y0's dtype {dtype}")
        checked[0] = True

    def f(t: float, y: torch.Tensor) -> torch.Tensor:
        counter[0] += 1
        tt = torch.tensor(t, dtype=dtype, device=device)
        if state.is_tuple:
            out = func(tt, state.unflatten(y))
            if not checked[0]:
                check(out)
            return state.flatten(out)
        out = func(tt, y)
        if not checked[0]:
            check(out)
        return out

    return f


def check_finite(y: torch.Tensor) -> None:
    with torch.no_grad():
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteStateError("non-finite value (nan/inf) in y0")
