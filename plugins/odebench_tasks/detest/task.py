"""What both frameworks' ``detest`` problems share: the scoring against the closed forms and the
trainer that trains nothing.

A cell solves each selected problem once per step, with no gradient.  The harness then records,
unchanged: ``nfe_forward`` (mean per step: the sum over the problems of one solve each),
``time_forward_s`` (median over the steps after the warm-up; ``time_backward_s`` is 0: there is
no backward pass) and ``metric`` = ``max_abs_error``: the largest |y - y_exact| over every
problem, output time and component.  Per problem, error and NFE go to the ``detest_problems``
column (JSON).
"""

from __future__ import annotations

import json

import numpy as np

from odebench.errors import NonFiniteStateError
from odebench.protocols import StepResult

METRIC = "max_abs_error"


class DetestProblem:
    """The framework-free half of a cell's problem; a framework's subclass implements
    ``timed_solve(odeint) -> (solutions, nfe, seconds, compile_s)``: per problem name the
    solution at ``self.times`` (numpy) and its forward NFE, the seconds of all the solves
    (clocks read after a sync), and the seconds spent compiling (None: nothing compiled)."""

    model = None  # nothing is trained (TaskSpec.trains is False)
    optimizer = None

    def __init__(self, options) -> None:
        self.options = options
        self.problems = options.selected()
        self.times = options.times()
        self.exact = {p.name: p.exact_at(self.times) for p in self.problems}
        self.per_problem: dict = {}

    def trainer(self, odeint) -> "SolveOnly":
        return SolveOnly(self, odeint)

    def timed_solve(self, odeint):
        raise NotImplementedError

    def score(self, solutions: dict, nfe: dict) -> float:
        """The largest absolute error over every problem, output time and component."""
        per = {}
        for p in self.problems:
            ys = np.asarray(solutions[p.name], dtype=np.float64)
            if not np.all(np.isfinite(ys)):
                raise NonFiniteStateError(f"DETEST {p.name}: the solution holds nan/inf (a solve that failed "
                                          "inside a compiled program returns nan)")
            per[p.name] = {METRIC: float(np.max(np.abs(ys - self.exact[p.name]))), "nfe_forward": nfe[p.name]}
        self.per_problem = per
        return max(entry[METRIC] for entry in per.values())

    def evaluate(self, odeint) -> float:
        solutions, nfe, _, _ = self.timed_solve(odeint)
        return self.score(solutions, nfe)

    def extras(self) -> dict:
        return {"detest_problems": json.dumps(self.per_problem)} if self.per_problem else {}

    def artifacts(self, odeint, out_dir, stem) -> list:
        return []  # nothing per cell: the work-precision plot comes from `odebench report`


class SolveOnly:
    """The Trainer (odebench.protocols) of a task that trains nothing: each step is one solve of
    every problem, timed by the framework's problem, so the harness's warm-up, medians and NFE
    means apply unchanged.  The step's "loss" is the error (the harness drops it from the row)."""

    def __init__(self, problem: DetestProblem, odeint) -> None:
        self.problem, self.odeint = problem, odeint

    def n_params(self) -> int:
        return 0

    def step(self, iteration: int, probe_memory: bool = False) -> StepResult:
        solutions, nfe, seconds, compile_s = self.problem.timed_solve(self.odeint)
        return StepResult(self.problem.score(solutions, nfe), seconds, 0.0, compile_s=compile_s)

    def evaluate(self, odeint) -> float:
        return self.problem.evaluate(odeint)
