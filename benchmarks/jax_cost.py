"""Cost per evaluation of odebench's JAX backends against diffrax's, on several problems (not a test).

    python -m benchmarks.jax_cost [--problems mlp-normal,mlp-wide,cnf,odenet-small]
                                  [--tols 1e-3,1e-5,1e-7] [--fixed-steps 10] [--counts returned]
                                  [--repeats 15] [--warmup 2] [--processes 3] [--odenet-processes 1]
                                  [--odenet-repeats 5] [--dispatch async] [--out table.md]

``--out table.md`` also writes table.json: every row with its repeats.  ``--dispatch sync`` turns
JAX's asynchronous CPU dispatch off in every process: then odebench's programs run on the calling
thread, as diffrax's do anyway (their host callbacks); on a pool thread the same kernels ran
slower here (docs/measurements/jax-vs-diffrax.md, "XLA:CPU's thread hand-offs").

Pairs: jax-adjoint against diffrax's BacksolveAdjoint, jax-backprop against diffrax's
RecursiveCheckpointAdjoint; dopri5 (diffrax Dopri5 + PIDController(rtol, atol)), rtol = atol =
tol, float32, one jitted ``value_and_grad`` of the problem's loss, compiled before timing.

At a tolerance the two libraries take different numbers of steps, so time divided by NFE also
carries each solve's fixed cost divided by a different count.  ``--fixed-steps N`` adds a
second table at equal NFE: dopri5's steps at a fixed step size (span / N) in both libraries
(diffrax's Dopri5 under ConstantStepSize, odebench's dopri5 tableau without its error
estimate), the same N steps backwards for the adjoints.

odebench's counts leave the timed programs as data, the only way they leave a compiled
program, as diffrax's statistics do (``--counts returned``, the default: ``return_counts=True``
and a tally whose cotangent is the solve's counts, see ``odebench_jax/counts.py``); the counts
in the table are read from the timed program itself.  ``--counts off`` times programs that
return no counts (they are read from a separate, untimed run).

The backward figures differ in kind between the backprop pair: odebench counts the evaluations
it recomputes (7 per dopri5 step), diffrax's callback whatever its checkpointed re-runs
evaluate.  So that pair's backward is compared per forward evaluation (the same work, a
step's pullback, per step taken).

Problems (``benchmarks/problems.py``'s JAX solve problems: the dynamics ``func(t, y, args)`` and
loss of each; the same arrays for both libraries):

    mlp-normal    Linear(2,64)-tanh-Linear(64,64)-tanh-Linear(64,2), weights and biases
                  N(0, 1/fan_in), batch 512, t = [0, 1], loss sum(y(1)^2)
    mlp-wide      the same MLP with weights N(0, 6.25/fan_in) (weight scale 2.5): a stiffer field
                  that takes several times the steps
    cnf           the cnf task's dynamics (concatsquash 2-64-64-64-2, tanh) with the exact trace
                  (log-density channel), batch 512 of 8gaussians, t = [0, 0.5], loss the mean NLL
    odenet-small  the mnist task's ODE block (GroupNorm-ReLU-ConcatConv x 2, width 16, 6x6 maps) on
                  the downsampled features of 8 digits, t = [0, 1], loss sum(y(1)^2) / batch

Figures per method: time of value_and_grad and of the forward alone (medians of interleaved
repeats; backward = the difference), the evaluations counted inside the vector field with a
``jax.debug.callback`` (``tooling.EvalCounter``) in separate untimed runs (forward: in the loss
alone; backward: the rest of value_and_grad), time per forward evaluation (forward ms /
forward NFE), time per backward evaluation (backward ms / backward NFE), and compile seconds of
the value_and_grad program.
Each ratio (odebench / diffrax, from the medians) comes with the quartiles of the same ratio
taken repeat by repeat, (q1-q3): on a noisy machine a ratio of medians near 1 means little
when its quartiles straddle 1.

Each cell runs in ``--processes`` fresh processes, one after another, and the figures are
taken over their repeats pooled: a program's speed here depends on the process it runs in
(``merge_processes``).  The odenet-small cells take one process by default
(``--odenet-processes``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial

from benchmarks.problems import SOLVE_PROBLEMS, solve_problem
from benchmarks.tooling import (EvalCounter, clock, count, in_processes, interleaved, machine_info, machine_lines,
                                markdown_table, names, parser, positive_int, quartiles, save, tolerances)

PAIRS = (("jax-adjoint", "diffrax-backsolve"), ("jax-backprop", "diffrax-recursive"))
PROBLEMS = tuple(SOLVE_PROBLEMS)
#: The problem whose cells take seconds an iteration: fewer repeats, one warm-up, its own processes.
SLOW = "odenet-small"


COUNT_MODES = ("returned", "off")
DISPATCH_MODES = ("async", "sync")


def set_dispatch(mode: str) -> None:
    """JAX's CPU dispatch for this process (before its first computation): "sync" runs every
    program on the calling thread, as diffrax's run, rather than on a pool thread, where the same
    kernels ran slower here (docs/measurements/jax-vs-diffrax.md, "XLA:CPU's thread hand-offs")."""
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", mode == "async")


class Method:
    """One side of a pair on one problem and tolerance: compiled programs, counts, timings.

    ``counts`` is whether odebench's timed programs return their counts: "returned" (outputs,
    and the tally's cotangent: ``return_counts=True, tally=...``) or "off" (no counts; they come
    from a separate run)."""

    def __init__(self, name: str, problem, tol: float, steps: int = 0, counts: str = "returned") -> None:
        import jax

        self.name, self.tol, self.steps, self.counts = name, tol, steps, counts
        self.stats = None
        self.field, self.y0, self.args, self.span, self.loss_of = problem
        self.tally = self._tally()
        loss = partial(self.loss, field=self.field)
        argnums = (0, 1) if self.returns_counts else 0
        t0 = time.perf_counter()
        self.grad = jax.jit(jax.value_and_grad(loss, argnums=argnums, has_aux=True)).lower(self.args, self.tally).compile()
        self.compile_s = time.perf_counter() - t0
        self.fwd = jax.jit(loss).lower(self.args, self.tally).compile()
        self.nfe_fwd, self.nfe_bwd = self._count()
        if self.stats is not None:  # odebench's own counters are exact (a callback inside jax.vjp of a
            self.nfe_fwd, self.nfe_bwd = self._own_counts()  # scan runs once per step, not per stage)

    @property
    def returns_counts(self) -> bool:
        return self.name.startswith("jax-") and self.counts == "returned"

    def _tally(self):
        from odebench_jax import tally

        return tally()

    def solve_end(self, args, tally, field, counts=None):
        """y at the end of the span, and odebench's returned counts (None otherwise)."""
        import jax.numpy as jnp

        t0, t1 = self.span
        if self.name.startswith("jax-"):
            import odebench
            from odebench.specs import SolveStats

            if self.stats is None:
                self.stats = SolveStats()
            if self.steps:  # dopri5's steps without its error estimate, a fixed step
                how = {"solver": fixed_dopri5(), "options": {"step_size": (t1 - t0) / self.steps}}
            else:
                how = {"solver": "dopri5", "rtol": self.tol, "atol": self.tol}
            counts = self.counts if counts is None else counts
            if counts == "returned":
                how.update(return_counts=True, tally=tally)
            out = odebench.backend(self.name).odeint(field, self.y0, jnp.asarray([t0, t1], jnp.float32), args,
                                                      stats=self.stats, **how)
            ys, returned = out if counts == "returned" else (out, None)
            return jax_tree_last(ys), returned
        import diffrax

        adjoint = diffrax.BacksolveAdjoint() if self.name == "diffrax-backsolve" else diffrax.RecursiveCheckpointAdjoint()
        if self.steps:
            control, dt0 = diffrax.ConstantStepSize(), (t1 - t0) / self.steps
        else:
            control, dt0 = diffrax.PIDController(rtol=self.tol, atol=self.tol), None
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Dopri5(), t0=t0, t1=t1, dt0=dt0, y0=self.y0,
                                  args=args, stepsize_controller=control, adjoint=adjoint,
                                  saveat=diffrax.SaveAt(t1=True), max_steps=4096)
        return jax_tree_last(sol.ys), None

    def loss(self, args, tally, field, counts=None):
        """(loss, odebench's returned counts or None): the has_aux form every program uses."""
        end, returned = self.solve_end(args, tally, field, counts)
        return self.loss_of(end), returned

    def _count(self) -> tuple:
        import jax

        counter = EvalCounter()
        loss = partial(self.loss, field=counter.jax_field(self.field))
        jax.block_until_ready(jax.jit(loss)(self.args, self.tally))
        jax.effects_barrier()
        fwd, counter.calls = counter.calls, 0
        jax.block_until_ready(jax.jit(jax.value_and_grad(loss, has_aux=True))(self.args, self.tally))
        jax.effects_barrier()
        return fwd, counter.calls - fwd

    def _own_counts(self) -> tuple:
        """odebench's counters over one run of the value_and_grad (forward, backward): read from
        the timed program's outputs when it returns them, else from the same program returning
        them, run apart."""
        import jax
        from odebench_jax import collect

        grad = self.grad if self.returns_counts else jax.jit(jax.value_and_grad(
            partial(self.loss, field=self.field, counts="returned"), argnums=(0, 1), has_aux=True))
        (_, counts), (_, tally_grad) = grad(self.args, self.tally)
        stats = collect(None, counts, tally_grad)
        return stats.nfe_forward, stats.nfe_backward

    def measure_once(self) -> tuple:
        """(value_and_grad seconds, forward seconds), each until its result is ready."""
        import jax

        total, _ = clock(lambda: self.grad(self.args, self.tally), sync=jax.block_until_ready)
        fwd, _ = clock(lambda: self.fwd(self.args, self.tally), sync=jax.block_until_ready)
        return total, fwd


def fixed_dopri5():
    """dopri5's tableau without its error estimate: odebench runs it with a fixed step, as diffrax
    runs Dopri5 under ConstantStepSize, so both take the same steps and evaluations (6 a step
    and 1; both FSAL)."""
    import dataclasses

    import odebench

    return dataclasses.replace(odebench.solver("dopri5"), name="dopri5-fixed", b_err=None, error_order=None)


def jax_tree_last(ys):
    import jax

    return jax.tree_util.tree_map(lambda a: a[-1], ys)


def run_cell(problem_name: str, tol: float, repeats: int, warmup: int, steps: int = 0,
             counts: str = "returned") -> list:
    """One problem at one tolerance (or, with ``steps``, at that many fixed dopri5 steps): the four
    methods interleaved, repeat by repeat, one row each."""
    problem = solve_problem(problem_name)
    methods = [Method(name, problem, tol, steps, counts) for pair in PAIRS for name in pair]
    for _ in range(warmup):
        for m in methods:
            m.measure_once()
    totals = {m.name: [] for m in methods}
    fwds = {m.name: [] for m in methods}
    for _, order in interleaved(methods, repeats):
        for m in order:
            total, fwd = m.measure_once()
            totals[m.name].append(total)
            fwds[m.name].append(fwd)
    setting = f"{steps} steps" if steps else f"{tol:.0e}"
    return [summarize(problem_name, setting, m.name, int(m.nfe_fwd), int(m.nfe_bwd), m.compile_s,
                      list(zip(totals[m.name], fwds[m.name]))) for m in methods]


def summarize(problem: str, setting: str, method: str, nfe_fwd: int, nfe_bwd: int, compile_s: float,
              repeats: list) -> dict:
    """One method's row from its repeats [(value_and_grad s, forward s)]: medians, backward =
    their difference, and the figures per evaluation."""
    total, fwd = statistics.median(t for t, _ in repeats), statistics.median(f for _, f in repeats)
    bwd = max(total - fwd, 0.0)
    return {"problem": problem, "setting": setting, "method": method, "ms": total * 1e3, "fwd_ms": fwd * 1e3,
            "bwd_ms": bwd * 1e3, "nfe_fwd": nfe_fwd, "nfe_bwd": nfe_bwd,
            "us_per_fwd": fwd * 1e6 / max(nfe_fwd, 1), "us_per_bwd": bwd * 1e6 / max(nfe_bwd, 1),
            "compile_s": compile_s, "repeats": [tuple(r) for r in repeats]}


def merge_processes(runs: list) -> list:
    """The rows of one cell measured in several processes, as one row per method: medians over
    the repeats of all processes pooled, the compile time the median of theirs.

    Why: a program's speed depends on the process it runs in (``tooling.in_processes`` gives
    the figures).  Repeat i of every method still ran interleaved in one process, so the pooled
    repeats keep their pairing for ``paired_spread``.  The counts are exact and must agree
    across processes."""
    by = {}
    for rows in runs:
        for r in rows:
            by.setdefault((r["problem"], r["setting"], r["method"]), []).append(r)
    merged = []
    for (problem, setting, method), rows in by.items():
        counts = {(r["nfe_fwd"], r["nfe_bwd"]) for r in rows}
        if len(counts) != 1:
            raise ValueError(f"{problem} {setting} {method}: the processes counted different evaluations {sorted(counts)}")
        (nfe_fwd, nfe_bwd), = counts
        repeats = [tuple(x) for r in rows for x in r["repeats"]]
        merged.append(summarize(problem, setting, method, nfe_fwd, nfe_bwd,
                                statistics.median(r["compile_s"] for r in rows), repeats))
    return merged


def cell_in_processes(problem: str, tol: float, steps: int, repeats: int, warmup: int, counts: str,
                      processes: int, dispatch: str = "async") -> list:
    """run_cell in ``processes`` fresh Python processes, one after another, merged
    (merge_processes says why)."""
    argv = ["--cell", f"{problem},{tol!r},{steps}", "--repeats", str(repeats), "--warmup", str(warmup),
            "--counts", counts, "--dispatch", dispatch]
    return merge_processes(in_processes("benchmarks.jax_cost", argv, processes, json_flag="--rows-json"))


def paired_spread(ours: dict, theirs: dict, backward_per: str) -> tuple:
    """The quartiles (q1, q3) of the ratios repeat by repeat (the methods ran interleaved, so
    repeat i of both ran within the same few seconds): forward per evaluation, and backward per
    ``backward_per`` ("nfe_bwd" or "nfe_fwd") evaluation.  The spread says how far a ratio of
    medians near 1 can be trusted on a noisy machine."""
    fwd, bwd = [], []
    for (t_o, f_o), (t_d, f_d) in zip(ours["repeats"], theirs["repeats"]):
        fwd.append((f_o / max(ours["nfe_fwd"], 1)) / (f_d / max(theirs["nfe_fwd"], 1)))
        b_o, b_d = max(t_o - f_o, 1e-12), max(t_d - f_d, 1e-12)
        bwd.append((b_o / max(ours[backward_per], 1)) / (b_d / max(theirs[backward_per], 1)))
    return quartiles(fwd), quartiles(bwd)


HEADER = ("problem", "tol / steps", "odebench / diffrax", "ms per iteration", "NFE fwd", "NFE bwd", "us per fwd eval",
          "us per bwd eval", "bwd us per fwd eval", "ratio fwd (q1–q3)", "ratio bwd (q1–q3)", "compile s")


def markdown(rows: list) -> str:
    """One line per pair and cell: odebench / diffrax for each figure, then the ratios.

    The backward ratio compares what is comparable: for the adjoint pair the time per backward
    evaluation; for the backprop pair the backward time per forward evaluation (the two
    libraries' backward counts differ in kind there: see the module docstring)."""
    by = {(r["problem"], r["setting"], r["method"]): r for r in rows}
    cells = []
    met = total = within = 0
    for (problem, setting, name), r in by.items():
        for ours, theirs in PAIRS:
            if name != ours:
                continue
            d = by[(problem, setting, theirs)]
            per_fwd = [x["bwd_ms"] * 1e3 / max(x["nfe_fwd"], 1) for x in (r, d)]
            f_ratio = r["us_per_fwd"] / d["us_per_fwd"]
            b_ratio = r["us_per_bwd"] / d["us_per_bwd"] if ours == "jax-adjoint" else per_fwd[0] / per_fwd[1]
            f_q, b_q = paired_spread(r, d, "nfe_bwd" if ours == "jax-adjoint" else "nfe_fwd")
            total += 1
            met += f_ratio <= 1.0 and b_ratio <= 1.0
            within += f_q[0] <= 1.0 and b_q[0] <= 1.0
            cells.append([problem, setting, f"{ours} / {theirs}", f"{r['ms']:.1f} / {d['ms']:.1f}",
                          f"{r['nfe_fwd']} / {d['nfe_fwd']}", f"{r['nfe_bwd']} / {d['nfe_bwd']}",
                          f"{r['us_per_fwd']:.0f} / {d['us_per_fwd']:.0f}",
                          f"{r['us_per_bwd']:.0f} / {d['us_per_bwd']:.0f}", f"{per_fwd[0]:.0f} / {per_fwd[1]:.0f}",
                          f"{f_ratio:.2f} ({f_q[0]:.2f}–{f_q[1]:.2f})",
                          f"{b_ratio:.2f} ({b_q[0]:.2f}–{b_q[1]:.2f})", f"{r['compile_s']:.1f} / {d['compile_s']:.1f}"])
    return (markdown_table(HEADER, cells, "lll" + "r" * 9)
            + f"\n\nCells at or below diffrax's cost per evaluation (forward and backward): {met}/{total}; "
            f"with both ratios' first quartile at or below 1: {within}/{total}")


def _cell_line(cell: list, prefix: str = "") -> str:
    return "  " + prefix + ", ".join(f"{r['problem']} {r['setting']} {r['method']}: {r['ms']:.1f} ms "
                                     f"({r['nfe_fwd']}+{r['nfe_bwd']} evals)" for r in cell)


def _parser():
    ap = parser(__doc__, "python -m benchmarks.jax_cost")
    ap.add_argument("--problems", type=names(PROBLEMS, "problem"), default=",".join(PROBLEMS))
    ap.add_argument("--tols", type=tolerances, default="1e-3,1e-5,1e-7")
    ap.add_argument("--repeats", type=positive_int, default=15)
    ap.add_argument("--odenet-repeats", type=positive_int, default=5,
                    help=f"repeats of the {SLOW} cells (seconds each)")
    ap.add_argument("--warmup", type=count, default=2)
    ap.add_argument("--fixed-steps", type=count, default=10,
                    help="also run every problem at this many fixed dopri5 steps, equal NFE for both libraries "
                         "(0: not)")
    ap.add_argument("--counts", choices=COUNT_MODES, default="returned",
                    help="whether odebench's timed programs return their counts as outputs (default) or "
                         "not (counted in a separate run)")
    ap.add_argument("--processes", type=positive_int, default=3,
                    help="measure each cell in this many fresh processes, one after another, and pool their "
                         "repeats (a program's speed depends on its process: see merge_processes)")
    ap.add_argument("--odenet-processes", type=positive_int, default=1,
                    help=f"processes per {SLOW} cell (its 1e-7 cells take minutes each)")
    ap.add_argument("--dispatch", choices=DISPATCH_MODES, default="async",
                    help="JAX's CPU dispatch: async (its default: a program without host callbacks runs on a "
                         "pool thread) or sync (jax_cpu_enable_async_dispatch off: every program on the calling "
                         "thread, as diffrax's, whose error checks are host callbacks, run anyway)")
    ap.add_argument("--out", default=None, help="write the table to this .md and, beside it (.json), every row with "
                                                "its repeats")
    ap.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # problem,tol,steps: one cell, this process
    ap.add_argument("--rows-json", default=None, help=argparse.SUPPRESS)
    return ap


def _one_cell(args) -> int:
    """A child of cell_in_processes: one cell measured here, its rows written as JSON."""
    import json

    problem, tol, steps = args.cell.split(",")
    set_dispatch(args.dispatch)
    cell = run_cell(problem, float(tol), args.repeats, args.warmup, int(steps), args.counts)
    print(_cell_line(cell, "(one process) "), flush=True)
    with open(args.rows_json, "w") as fh:
        json.dump(cell, fh)
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.cell:
        return _one_cell(args)
    set_dispatch(args.dispatch)
    rows, fixed = [], []
    for problem in args.problems:
        repeats = args.odenet_repeats if problem == SLOW else args.repeats
        warmup = 1 if problem == SLOW else args.warmup
        processes = args.odenet_processes if problem == SLOW else args.processes
        settings = [(tol, 0) for tol in args.tols] + ([(0.0, args.fixed_steps)] if args.fixed_steps else [])
        for tol, steps in settings:
            if processes == 1:
                cell = run_cell(problem, tol, repeats, warmup, steps, args.counts)
            else:
                cell = cell_in_processes(problem, tol, steps, repeats, warmup, args.counts, processes, args.dispatch)
            (fixed if steps else rows).extend(cell)
            print(_cell_line(cell, f"({processes} processes pooled) " if processes > 1 else ""), flush=True)
    text = markdown(rows)
    if fixed:
        text += f"\n\nAt equal NFE ({args.fixed_steps} fixed dopri5 steps in both libraries):\n\n" + markdown(fixed)
    text += (f"\n\nJAX CPU dispatch: {args.dispatch}.\n\nMachine:\n\n"
             + machine_lines(machine_info("jax", "jaxlib", "diffrax", "equinox")))
    print("\n" + text)
    if args.out:
        save(args.out, text, rows + fixed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
