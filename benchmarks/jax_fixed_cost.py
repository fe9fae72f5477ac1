"""A forward solve's cost as a line: fixed cost per solve + cost per evaluation (not a test).

    python -m benchmarks.jax_fixed_cost [--problems mlp-normal] [--steps 1,2,4,8,16] [--repeats 300]
                                        [--processes 3] [--dispatch async,sync] [--out fit.md]

Why: ``benchmarks/jax_cost.py`` divides a solve's time by its evaluations.  Where the two
libraries take different numbers of steps (14 against 19 on mlp-normal at 1e-3) that ratio also
holds each solve's fixed cost divided by a different count, so a library that takes fewer steps
looks dearer per evaluation even when both parts of its cost are smaller.  This separates
them: the forward alone (odebench's ``jax-adjoint``, the same program as ``jax-backprop``'s
when not differentiated, against diffrax's ``Dopri5`` with ``BacksolveAdjoint``) at several
fixed numbers of dopri5 steps (6 evaluations a step and 1, in both), timed interleaved, and a
least-squares line through the medians, time = fixed + per_eval * NFE, in each process.

Each (problem, dispatch) runs in ``--processes`` fresh processes (a program's speed depends on
its process: ``tooling.in_processes``); the table gives the median of the processes' fits and
their range.  ``--dispatch`` lists JAX's CPU dispatch modes to measure: by default (async) a
program without host callbacks runs on a pool thread, where the same kernels ran slower here
than on the calling thread (sync), where diffrax's programs run (docs/measurements/
jax-vs-diffrax.md, "XLA:CPU's thread hand-offs").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.jax_cost import DISPATCH_MODES, PROBLEMS, Method, set_dispatch
from benchmarks.problems import solve_problem
from benchmarks.tooling import (clock, count, in_processes, interleaved, machine_info, machine_lines, markdown_table,
                                names, parser, positive_int, save)

LIBRARIES = ("jax-adjoint", "diffrax-backsolve")


def fit_line(nfe: list, seconds: list) -> tuple:
    """(fixed µs per solve, µs per evaluation): the least-squares line through the points."""
    if len(set(nfe)) < 2:
        raise ValueError("a line needs at least two different evaluation counts")
    slope, intercept = np.polyfit(np.asarray(nfe, float), np.asarray(seconds, float) * 1e6, 1)
    return float(intercept), float(slope)


def measure(problem: str, steps: list, repeats: int, warmup: int) -> dict:
    """One process: each library's forward at each number of fixed steps, interleaved; the
    medians and the fitted line per library."""
    import jax

    built = solve_problem(problem)
    methods = {(name, s): Method(name, built, 0.0, s) for name in LIBRARIES for s in steps}

    def once(m) -> float:
        return clock(lambda: m.fwd(m.args, m.tally), sync=jax.block_until_ready)[0]

    for _ in range(warmup):
        for m in methods.values():
            once(m)
    times = {k: [] for k in methods}
    for _, order in interleaved(list(methods), repeats):
        for key in order:
            times[key].append(once(methods[key]))
    out = {}
    for name in LIBRARIES:
        nfe = [int(methods[(name, s)].nfe_fwd) for s in steps]
        medians = [statistics.median(times[(name, s)]) for s in steps]
        out[name] = {"nfe": nfe, "median_s": medians, "fit": fit_line(nfe, medians)}
    return out


def fits_in_processes(problem: str, dispatch: str, args) -> list:
    """``measure`` in ``args.processes`` fresh processes, one after another."""
    argv = ["--child", f"{problem},{dispatch}", "--steps", args.steps, "--repeats", str(args.repeats),
            "--warmup", str(args.warmup)]
    return in_processes("benchmarks.jax_fixed_cost", argv, args.processes)


def markdown(results: dict) -> str:
    """One line per (problem, dispatch): each library's fixed cost and cost per evaluation, the
    median of the processes' fits with their range."""
    rows = []
    for (problem, dispatch), runs in results.items():
        cells = [problem, dispatch, len(runs)]
        for part in (0, 1):
            for name in LIBRARIES:
                v = [r[name]["fit"][part] for r in runs]
                cells.append(f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f})" if len(v) > 1
                             else f"{v[0]:.1f}")
        rows.append(cells)
    return markdown_table(["problem", "dispatch", "processes", "odebench fixed µs", "diffrax fixed µs",
                           "odebench µs per eval", "diffrax µs per eval"], rows, "llrrrrr")


def _steps(text: str) -> str:
    values = [int(x) for x in text.split(",") if x.strip()]
    if len(set(values)) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--steps needs two or more different positive counts, got {text!r}")
    return ",".join(map(str, values))


def _parser():
    ap = parser(__doc__, "python -m benchmarks.jax_fixed_cost")
    ap.add_argument("--problems", type=names(PROBLEMS, "problem"), default="mlp-normal")
    ap.add_argument("--steps", type=_steps, default="1,2,4,8,16")
    ap.add_argument("--repeats", type=positive_int, default=300)
    ap.add_argument("--warmup", type=count, default=20)
    ap.add_argument("--processes", type=positive_int, default=3)
    ap.add_argument("--dispatch", type=names(DISPATCH_MODES, "dispatch mode"), default="async,sync",
                    help="comma-separated: " + ", ".join(DISPATCH_MODES))
    ap.add_argument("--out", default=None, help="write the table to this .md and, beside it (.json), every "
                                                "process's medians and fit")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # problem,dispatch: one process
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    steps = [int(x) for x in args.steps.split(",")]
    if args.child:
        problem, dispatch = args.child.split(",")
        set_dispatch(dispatch)
        Path(args.json).write_text(json.dumps(measure(problem, steps, args.repeats, args.warmup)))
        return 0
    results = {}
    for problem in args.problems:
        for dispatch in args.dispatch:
            results[(problem, dispatch)] = runs = fits_in_processes(problem, dispatch, args)
            print(f"  {problem} {dispatch}: " + "; ".join(
                f"{name} " + ", ".join(f"{r[name]['fit'][0]:.0f} µs + {r[name]['fit'][1]:.1f} µs/eval" for r in runs)
                for name in LIBRARIES), flush=True)
    text = (markdown(results) + f"\n\nFixed dopri5 steps {args.steps} (NFE 6·steps + 1), {args.repeats} interleaved "
            "repeats per process.\n\nMachine:\n\n" + machine_lines(machine_info("jax", "jaxlib", "diffrax", "equinox")))
    print("\n" + text)
    if args.out:
        save(args.out, text, [{"problem": p, "dispatch": d, "runs": runs} for (p, d), runs in results.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
