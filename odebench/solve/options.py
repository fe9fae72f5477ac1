"""Solver options, checked once for every framework: defaults, allowed keys, the messages.

Both integrators (torch and JAX) take the same options, so a user gets the same defaults and
the same error from either.  The adjoint's backward solve has its own options
(``adjoint_options``); they differ from the forward ones in a single default, the first step
of each backward segment, ``"warm"``:

* ``"warm"`` (adjoint default): the first backward segment starts with the step the forward
  solve's controller proposed last, and each later segment with the step the previous
  segment's controller proposed last -- the backward solve continues the controller instead
  of restarting it at every output time (as one forward solve carries its step across output
  times, and as diffrax carries its controller state).
* ``None``: the automatic first step of Hairer, Nørsett & Wanner (1993), sec. II.4, chosen
  afresh on every segment: torchdiffeq's behaviour.  On the adjoint system it is often small,
  because the parameter cotangents start at zero and their error scale is then ``atol``.
* a number: that step on every segment.

``step_to_outputs`` (adaptive solvers): False: values at the requested times come from the
tableau's interpolant between step ends (dense output), so the number of output times costs
no evaluations; True: the controller shortens steps to land exactly on every output time
(the full order at every output, at the price of more steps).  The default (None) is False
where the interpolant is within one order of the method (``Tableau.interpolates_by_default``:
dopri5, tsit5, bosh3, adaptive_heun) and True where it is not (dopri8, rk8_13m).
"""

from __future__ import annotations

import math
from typing import Optional

from ..errors import InvalidInputError
from ..specs import Tableau
from .checks import parse_bool

ADAPTIVE_DEFAULTS = {"first_step": None, "safety": 0.9, "ifactor": 10.0, "dfactor": 0.2, "max_steps": 10_000,
                     "step_to_outputs": None}
FIXED_DEFAULTS = {"step_size": None, "max_steps": 1_000_000}
WARM = "warm"  # adjoint first step: continue the controller (see the module docstring)


def resolve_options(tableau: Tableau, options: Optional[dict], max_steps_default: Optional[int] = None,
                    adjoint: bool = False) -> dict:
    """Defaults merged with the user's options; unknown keys are an error listing the allowed ones.

    ``max_steps_default`` overrides the default max_steps of adaptive solvers (jax-backprop
    uses a lower one: its memory is proportional to it).  ``adjoint=True``: options of an
    adjoint's backward solve, whose first_step defaults to, and may be, ``"warm"``.
    """
    defaults = dict(ADAPTIVE_DEFAULTS if tableau.adaptive else FIXED_DEFAULTS)
    if max_steps_default is not None and tableau.adaptive:
        defaults["max_steps"] = max_steps_default
    if adjoint and tableau.adaptive:
        defaults["first_step"] = WARM
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        kind = "adaptive" if tableau.adaptive else "fixed-step"
        raise InvalidInputError(
            f"unknown option(s) {', '.join(unknown)} for {kind} solver {tableau.name!r}; "
            f"allowed: {', '.join(sorted(defaults))}"
        )
    merged = {**defaults, **options}
    if not tableau.adaptive:
        step = merged["step_size"]
        if step is None or not _positive(step):
            raise InvalidInputError(
                f"fixed-step solver {tableau.name!r} needs options={{'step_size': h}} with h > 0 (got {step!r})"
            )
        merged["step_size"] = float(step)
    else:
        for key in ("safety", "ifactor", "dfactor"):
            if not _positive(merged[key]):
                raise InvalidInputError(f"option {key} must be a positive number, got {merged[key]!r}")
            merged[key] = float(merged[key])
        first = merged["first_step"]
        if adjoint and first == WARM:
            pass
        elif first is not None:
            if not _positive(first):
                allowed = f"None, {WARM!r} or a positive number" if adjoint else "None or a positive number"
                raise InvalidInputError(f"option first_step must be {allowed}, got {first!r}")
            merged["first_step"] = float(first)
    if tableau.adaptive:
        choice = merged["step_to_outputs"]
        merged["step_to_outputs"] = (not tableau.interpolates_by_default if choice is None
                                     else parse_bool("option step_to_outputs", choice))
    if isinstance(merged["max_steps"], bool) or not isinstance(merged["max_steps"], int) or merged["max_steps"] < 1:
        raise InvalidInputError(f"option max_steps must be a positive integer, got {merged['max_steps']!r}")
    return merged


def resolve_adjoint_options(tableau: Tableau, forward_options: dict, adjoint_options: Optional[dict]) -> dict:
    """The backward solve's options: ``adjoint_options`` if given, else the forward's (already
    resolved) options with the adjoint's own first-step default (``"warm"``)."""
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in forward_options.items() if k != "first_step"}
    return resolve_options(tableau, adjoint_options, adjoint=True)


def _positive(x) -> bool:
    try:
        x = float(x)
    except (TypeError, ValueError):  # also a traced value (jax's ConcretizationTypeError is a TypeError)
        return False
    return math.isfinite(x) and x > 0
