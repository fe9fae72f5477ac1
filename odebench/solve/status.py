"""How a solve ends: one set of result codes and their messages, shared by every integrator.

A compiled loop (JAX) cannot raise, so it returns a code and where it stopped; an eager loop
(torch) raises at once.  Both build their error here, so a user reads the same message from
either framework (diffrax's ``RESULTS`` plays this part there).
"""

from __future__ import annotations

import enum
from typing import Optional

from ..errors import MaxStepsError, NonFiniteStateError, OdebenchError


class Status(enum.IntEnum):
    OK = 0
    MAX_STEPS = 1  # adaptive: max_steps used up before the last output time
    NON_FINITE = 2  # adaptive: the error ratio is nan/inf
    UNDERFLOW = 3  # adaptive: the step became smaller than 4 ulp of t
    MAX_STEPS_FIXED = 4
    NON_FINITE_FIXED = 5  # fixed step: nan/inf in the state at an output time
    NON_FINITE_Y0 = 6


def error_for(status: int, t: float = 0.0, t_next: float = 0.0, h: float = 0.0, max_steps: int = 0,
              what: str = "the state") -> Optional[OdebenchError]:
    """The odebench error for ``status`` (None for OK): where it stopped (t, the next output time
    t_next, the step h that failed) and the max_steps it ran under."""
    status = Status(int(status))
    h = abs(h)
    if status is Status.OK:
        return None
    if status is Status.MAX_STEPS:
        return MaxStepsError(
            f"max_steps={max_steps} reached at t={t:.10g} before t={t_next:.10g} "
            f"(last step {h:.3g}); raise options['max_steps'] or loosen rtol/atol"
        )
    if status is Status.MAX_STEPS_FIXED:
        return MaxStepsError(f"max_steps={max_steps} reached at t={t:.10g} before t={t_next:.10g}")
    if status is Status.NON_FINITE:
        return NonFiniteStateError(f"non-finite value (nan/inf) in {what} at t={t:.10g} (step {h:.3g})")
    if status is Status.UNDERFLOW:
        return NonFiniteStateError(
            f"step size underflow ({h:.3g}) at t={t:.10g}: the problem is stiff or the dynamics blow up"
        )
    if status is Status.NON_FINITE_FIXED:
        return NonFiniteStateError(f"non-finite value (nan/inf) in {what} at t={t:.10g}")
    return NonFiniteStateError("non-finite value (nan/inf) in y0")
