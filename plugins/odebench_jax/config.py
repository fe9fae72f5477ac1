"""The static description of one solve (hashable: a static argument of jax.jit), its traced
numbers, and odebench.solve's status codes as the ints the compiled loop computes with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax.numpy as jnp

from odebench.solve import Status
from odebench.specs import Tableau

# the status codes of odebench.solve as plain ints (they become int32 constants of the program)
OK, MAX_STEPS, NON_FINITE, UNDERFLOW, MAX_STEPS_FIXED, NON_FINITE_FIXED, NON_FINITE_Y0 = (int(s) for s in Status)



@dataclass(frozen=True)
class SolveConfig:
    """Everything about a solve that is fixed at trace time.

    ``slices``: the mixed error norm's slices of the flat state (None: one RMS norm).
    ``driver``: "while", or "record" (also return the tape of accepted steps);
    ``length``: the most steps the tape must cover (max_steps; taped in segments).
    """

    tableau: Tableau
    options: tuple  # sorted (key, value) pairs from resolve_options
    slices: Optional[tuple] = None
    driver: str = "while"
    length: int = 0

    @property
    def opts(self) -> dict:
        return dict(self.options)


def make_config(tableau: Tableau, options: dict, slices=None, driver="while", length=0):
    """The static config; a fixed step size is left out (it is traced: see ``numbers``)."""
    static = {k: (None if k == "step_size" else v) for k, v in options.items()}
    return SolveConfig(tableau, tuple(sorted(static.items())),
                       None if slices is None else tuple(tuple(s) for s in slices), driver, int(length))



def numbers(rtol: float, atol: float, options: dict, cdt, first_step=0.0):
    """The traced numbers of a solve: (rtol, atol, fixed step size or 0, first step or 0).

    The last is the first step |h| of an adaptive solve whose options say first_step="warm"
    (the adjoint's backward segments); it may be traced (``nums.at[3].set(h)``).
    """
    return jnp.stack([jnp.asarray(x, cdt) for x in (rtol, atol, options.get("step_size") or 0.0, first_step)])
