"""Options of the ``detest`` task (framework-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._common.options import integer, positive_float, positive_int
from .problems import PROBLEMS, Problem


@dataclass
class DetestOptions:
    """Which DETEST problems, where they are compared with their closed forms, how often solved.

    ``problems``: comma-separated names (A1-A4, B4, D1-D5, E1) or ``all``; each cell solves every
    one of them.  ``t1``: the end of [0, t1] (DETEST's 20); ``n_times``: evenly spaced output times
    on it, both ends included, where the error is measured (between step ends they come from the
    solver's dense output).  ``step_size``: the step of fixed-step solvers (rk4, euler, ...) when
    --solver-opt gives none.  ``iterations`` (``--steps``): solves of each problem per cell; the
    first is the warm-up (compilation in JAX), left out of the time median.
    """

    problems: str = "A1,A3,B4"
    t1: float = 20.0
    n_times: int = 21
    step_size: float = 0.1
    iterations: int = 4

    def __post_init__(self) -> None:
        self.selected()
        self.t1 = positive_float("t1", self.t1)
        self.n_times = integer("n_times", self.n_times, 2)
        self.step_size = positive_float("step_size", self.step_size)
        self.iterations = positive_int("iterations", self.iterations)
        if self.iterations < 2:
            raise ValueError(f"iterations (--steps) must be at least 2: the first solve is the warm-up, "
                             f"left out of the time; got {self.iterations}")

    def selected(self) -> list[Problem]:
        """The problems named by ``problems``, in the order given."""
        text = str(self.problems).strip()
        names = list(PROBLEMS) if text.lower() == "all" else [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in PROBLEMS]
        if not names or unknown:
            what = f"unknown problem(s) {', '.join(unknown)}" if unknown else f"none named in {self.problems!r}"
            raise ValueError(f"problems: {what}; known: {', '.join(PROBLEMS)} (or all)")
        return [PROBLEMS[n] for n in dict.fromkeys(names)]

    def times(self) -> np.ndarray:
        return np.linspace(0.0, self.t1, self.n_times)
