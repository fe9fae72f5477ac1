"""Side-by-side benchmark: odebench's jax backends against diffrax and jax.experimental.ode (not a test).

    python -m benchmarks.jax_vs_diffrax [--repeats N] [--warmup W]
                                        [--tols 1e-3,1e-5,1e-7] [--out table.md|table.csv]

Problem (fixed, the one of benchmarks/torch_vs_torchdiffeq.py): MLP dynamics dy/dt = net(y),
net = Linear(2,64)-tanh-Linear(64,64)-tanh-Linear(64,2) (time-independent), batch 512, float32,
t = [0, 1], dopri5, rtol = atol = tol.  Weights drawn in numpy (torch's nn.Linear scheme,
U(+-1/sqrt(fan_in))), y0 ~ N(0, 1), seed 0; the same arrays for every library.
Loss = sum(y(1)**2); one iteration = one call of the jitted ``value_and_grad`` of the loss with
respect to the weights (forward + backward), timed after ``block_until_ready``.

Methods (one jitted program each, compiled before timing; compile seconds are reported):

    jax-adjoint         odebench.backend("jax-adjoint")      custom_vjp continuous adjoint; each
                        backward segment starts with the step the controller proposed last
    jax-adjoint-restart the same with adjoint_options={"first_step": None}: a fresh automatic
                        first step on every backward segment (torchdiffeq's backward control)
    jax-adjoint-seminorm  the same as jax-adjoint, backward error norm without the parameter cotangents
    jax-backprop        odebench.backend("jax-backprop")     reverse mode through the solver
    diffrax-backsolve   diffrax Dopri5 + PIDController(rtol, atol) + BacksolveAdjoint()
    diffrax-backsolve-mixed  the same, whose backward PIDController uses odebench's mixed norm
                        (max over leaves of the RMS) -- the same error norm as jax-adjoint
    diffrax-recursive   diffrax Dopri5 + PIDController(rtol, atol) + RecursiveCheckpointAdjoint()
    jax-ode             jax.experimental.ode.odeint (dopri5, its own adjoint)

Pairs compared: jax-adjoint / diffrax-backsolve (goal: ratio <= 1.0 in every cell),
jax-adjoint / jax-ode, jax-backprop / diffrax-recursive, and for information
jax-adjoint / diffrax-backsolve-mixed (same norm), jax-adjoint-restart against both diffrax
backsolves (the restarted backward first step), and jax-adjoint-seminorm / diffrax-backsolve.

Error norms differ: odebench's adjoints (as torch's and torchdiffeq's) take the max over channels of the RMS of y, of the adjoint a and of each
parameter's cotangent; diffrax's PIDController takes one RMS over the whole augmented state;
jax.experimental.ode one RMS over the whole (raveled) state.

Forward (the jitted loss alone) is timed right after each value_and_grad; backward is
reported as value_and_grad minus forward, the rule odebench's jax runtime uses.

Time is the median over --repeats iterations after --warmup iterations; all methods of a cell
are interleaved repeat by repeat (the order rotates) so that machine noise hits them alike.
NFE: odebench's own counters (a SolveStats passed as stats=: forward, backward); for every method
(odebench's too, as a cross-check) the evaluations of the dynamics are also counted in
separate, untimed runs with a jax.debug.callback inside the vector field: "fwd" = in the
jitted loss alone, "total" = in the jitted value_and_grad (for the backprop methods the
excess over fwd is the recomputation of checkpointed steps during the backward pass).
Also printed: max |y(1) difference| and max |gradient difference| against diffrax-backsolve.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from functools import partial

import numpy as np

import jax
import jax.numpy as jnp

import diffrax
import odebench
from odebench.specs import SolveStats
from jax.experimental.ode import odeint as jax_ode_odeint

from benchmarks.problems import ARCH, BATCH, SEED, jax_mlp, jax_mlp_params, machine_info

DTYPE = jnp.float32
TIME_GOAL = 1.0
METHODS = ("jax-adjoint", "jax-adjoint-restart", "jax-adjoint-seminorm", "jax-backprop", "diffrax-backsolve", "diffrax-backsolve-mixed",
           "diffrax-recursive", "jax-ode")
PAIRS = (("jax-adjoint", "diffrax-backsolve"), ("jax-adjoint", "jax-ode"), ("jax-backprop", "diffrax-recursive"),
         ("jax-adjoint", "diffrax-backsolve-mixed"), ("jax-adjoint-restart", "diffrax-backsolve"),
         ("jax-adjoint-restart", "diffrax-backsolve-mixed"), ("jax-adjoint-seminorm", "diffrax-backsolve"))
BACKEND = {"jax-adjoint-restart": "jax-adjoint"}  # method -> odebench backend, where they differ
METHOD_KWARGS = {"jax-adjoint-restart": {"adjoint_options": {"first_step": None}}}
GOAL_PAIR = ("jax-adjoint", "diffrax-backsolve")


def mixed_rms(tree):
    """odebench's adjoint error norm: the max over leaves (y, a, each parameter) of their RMS."""
    return jnp.max(jnp.stack([jnp.sqrt(jnp.mean(leaf ** 2)) for leaf in jax.tree_util.tree_leaves(tree)]))


class Counter:
    """Counts evaluations of the vector field through jax.debug.callback (counting runs only)."""

    def __init__(self) -> None:
        self.calls = 0

    def _bump(self) -> None:
        self.calls += 1

    def wrap(self, field):
        def counted(*a):
            jax.debug.callback(self._bump)
            return field(*a)

        return counted


class Method:
    """One library's side of a cell: jitted loss and value_and_grad programs, plus counting runs."""

    def __init__(self, name: str, tol: float, params, y0) -> None:
        self.name, self.tol, self.params, self.y0 = name, tol, params, y0
        self.t = jnp.asarray([0.0, 1.0], DTYPE)
        self.backend = (odebench.backend(BACKEND.get(name, name)) if name.startswith("jax-") and name != "jax-ode"
                        else None)
        self.stats = SolveStats()  # odebench's own counters of the timed program
        self.loss = jax.jit(partial(self.loss_fn, field=None))
        self.grad = jax.jit(jax.value_and_grad(partial(self.loss_fn, field=None)))
        t0 = time.perf_counter()
        self.grad = self.grad.lower(params, y0).compile()
        self.loss = self.loss.lower(params, y0).compile()
        self.compile_s = time.perf_counter() - t0

    def y1(self, params, y0, field=None, counted=None):
        field = field or (lambda t, y, args: jax_mlp(args, y))
        tol = self.tol
        if self.backend is not None:
            stats = self.stats if counted is None else counted
            return self.backend.odeint(field, y0, self.t, args=params, solver="dopri5", rtol=tol, atol=tol,
                                       stats=stats, **METHOD_KWARGS.get(self.name, {}))[-1]
        if self.name == "jax-ode":
            return jax_ode_odeint(lambda y, t, p: field(t, y, p), y0, self.t, params, rtol=tol, atol=tol)[-1]
        if self.name == "diffrax-backsolve":
            adjoint = diffrax.BacksolveAdjoint()
        elif self.name == "diffrax-backsolve-mixed":
            adjoint = diffrax.BacksolveAdjoint(stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol, norm=mixed_rms))
        else:
            adjoint = diffrax.RecursiveCheckpointAdjoint()
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field), diffrax.Dopri5(), t0=0.0, t1=1.0, dt0=None, y0=y0, args=params,
            stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol), adjoint=adjoint,
            saveat=diffrax.SaveAt(t1=True), max_steps=4096,
        )
        return sol.ys[-1]

    def loss_fn(self, params, y0, field=None, counted=None):
        return jnp.sum(self.y1(params, y0, field, counted) ** 2)

    def iteration(self) -> tuple:
        """(seconds of the jitted value_and_grad, seconds of the jitted loss alone)."""
        start = time.perf_counter()
        jax.block_until_ready(self.grad(self.params, self.y0))
        mid = time.perf_counter()
        jax.block_until_ready(self.loss(self.params, self.y0))
        return mid - start, time.perf_counter() - mid

    def counts(self) -> dict:
        """Counted evaluations (fwd, total) in untimed runs, odebench's own counters, y(1), grads."""
        counter = Counter()
        field = counter.wrap(lambda t, y, args: jax_mlp(args, y))
        scratch = SolveStats()  # the counting runs' odebench counters, kept apart from self.stats
        loss = jax.jit(partial(self.loss_fn, field=field, counted=scratch))
        jax.block_until_ready(loss(self.params, self.y0))
        jax.effects_barrier()
        fwd = counter.calls
        counter.calls = 0
        jax.block_until_ready(jax.jit(jax.value_and_grad(partial(self.loss_fn, field=field, counted=scratch)))(
            self.params, self.y0))
        jax.effects_barrier()
        total = counter.calls
        own = None
        if self.backend is not None:
            jax.effects_barrier()
            self.stats.reset()
            jax.block_until_ready(self.grad(self.params, self.y0))
            jax.effects_barrier()
            s = self.stats
            own = (s.nfe_forward, s.nfe_backward)
        y1 = np.asarray(jax.jit(partial(self.y1, counted=scratch))(self.params, self.y0))
        _, grads = self.grad(self.params, self.y0)
        return {"fwd": fwd, "total": total, "own": own, "y1": y1,
                "grads": [np.asarray(g) for g in jax.tree_util.tree_leaves(grads)]}


def run_cell(tol: float, methods: list, repeats: int, warmup: int, notes: list) -> dict:
    params, y0 = jax_mlp_params(SEED, DTYPE)
    runners = {name: Method(name, tol, params, y0) for name in methods}
    for _ in range(warmup):
        for r in runners.values():
            r.iteration()
    counts = {name: r.counts() for name, r in runners.items()}
    times = {name: [] for name in methods}
    fwd_times = {name: [] for name in methods}
    order = list(runners.values())
    for i in range(repeats):
        k = i % len(order)
        for r in order[k:] + order[:k]:
            total, fwd = r.iteration()
            times[r.name].append(total)
            fwd_times[r.name].append(fwd)
    ref = counts.get("diffrax-backsolve") or next(iter(counts.values()))
    row = {"tol": tol}
    for name in methods:
        c = counts[name]
        row[f"{name} ms"] = 1e3 * statistics.median(times[name])
        row[f"{name} ms min"] = 1e3 * min(times[name])
        row[f"{name} fwd ms"] = 1e3 * statistics.median(fwd_times[name])
        row[f"{name} compile s"] = runners[name].compile_s
        row[f"{name} nfe fwd"] = c["fwd"]
        row[f"{name} nfe total"] = c["total"]
        row[f"{name} own nfe"] = c["own"]
        row[f"{name} y1 diff"] = float(np.max(np.abs(c["y1"] - ref["y1"])))
        row[f"{name} grad diff"] = max(float(np.max(np.abs(a - b))) for a, b in zip(c["grads"], ref["grads"]))
        if c["own"] is not None:
            own_fwd, own_bwd = c["own"]
            counted_bwd = c["total"] - c["fwd"]
            backprop = name.endswith("backprop")
            if own_fwd != c["fwd"] or (not backprop and own_bwd != counted_bwd):
                notes.append(f"{name} tol={tol:g}: odebench counters (fwd {own_fwd}, bwd {own_bwd}) differ from "
                             f"the callback count (fwd {c['fwd']}, value_and_grad total {c['total']})")
    row["grad max abs"] = max(float(np.max(np.abs(g))) for g in ref["grads"])
    for a, b in PAIRS:
        if a in methods and b in methods:
            row[f"{a}/{b}"] = row[f"{a} ms"] / row[f"{b} ms"]
    return row


def markdown(rows: list, methods: list, info: dict, repeats: int, warmup: int) -> str:
    pairs = [(a, b) for a, b in PAIRS if a in methods and b in methods]
    lines = [
        "# odebench (jax) vs diffrax and jax.experimental.ode (CPU)",
        "",
        f"Problem: MLP {ARCH}; batch {BATCH}; float32; t = [0, 1]; dopri5; rtol = atol = tol; "
        f"loss = sum(y(1)^2); time = one jitted value_and_grad (forward + backward), median of "
        f"{repeats} interleaved repeats after {warmup} warm-up.",
        "",
        "Time per iteration (ms, median):",
        "",
        "| tol | " + " | ".join(methods) + " | " + " | ".join(f"{a} / {b}" for a, b in pairs) + " |",
        "|---|" + "---:|" * (len(methods) + len(pairs)),
    ]
    for r in rows:
        lines.append(
            f"| {r['tol']:.0e} | " + " | ".join(f"{r[f'{m} ms']:.1f}" for m in methods) + " | "
            + " | ".join(f"{r[f'{a}/{b}']:.2f}" for a, b in pairs) + " |"
        )
    lines += [
        "",
        "Forward (jitted loss alone) / backward (value_and_grad minus forward), ms, medians:",
        "",
        "| tol | " + " | ".join(methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for r in rows:
        lines.append(f"| {r['tol']:.0e} | " + " | ".join(
            f"{r[f'{m} fwd ms']:.1f} / {r[f'{m} ms'] - r[f'{m} fwd ms']:.1f}" for m in methods) + " |")
    lines += [
        "",
        "Function evaluations, counted in the vector field (fwd = jitted loss alone; "
        "bwd = value_and_grad minus fwd):",
        "",
        "| tol | " + " | ".join(f"{m} fwd/bwd" for m in methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for r in rows:
        lines.append(f"| {r['tol']:.0e} | " + " | ".join(
            f"{r[f'{m} nfe fwd']}/{r[f'{m} nfe total'] - r[f'{m} nfe fwd']}" for m in methods) + " |")
    lines += [
        "",
        "For the backprop methods the bwd count is the recomputation of steps in the backward pass. "
        "For jax-backprop it under-counts: a jax.debug.callback inside jax.vjp of the stage scan runs "
        "once per step, not once per stage; its own nfe_backward (7 per dopri5 step) is exact.",
        "",
        "Backward cost per backward evaluation (backward ms / bwd count, microseconds): the price of "
        "one vector-Jacobian product of the dynamics inside each library's loop, whatever the "
        "number of steps its controller chose:",
        "",
        "| tol | " + " | ".join(methods) + " |",
        "|---|" + "---:|" * len(methods),
    ]
    for r in rows:
        cells = []
        for m in methods:
            bwd_nfe = r[f'{m} nfe total'] - r[f'{m} nfe fwd']
            bwd_ms = r[f'{m} ms'] - r[f'{m} fwd ms']
            cells.append(f"{1e3 * bwd_ms / bwd_nfe:.0f}" if bwd_nfe > 0 else "-")
        lines.append(f"| {r['tol']:.0e} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Agreement with diffrax-backsolve (max abs diff of y(1) | of the gradient), odebench's own "
        "counters (fwd, bwd), compile seconds, min ms:",
        "",
        "| tol | method | y(1) diff | grad diff | own NFE | compile s | min ms |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        for m in methods:
            own = r[f"{m} own nfe"]
            lines.append(
                f"| {r['tol']:.0e} | {m} | {r[f'{m} y1 diff']:.2e} | {r[f'{m} grad diff']:.2e} | "
                f"{'' if own is None else own} | {r[f'{m} compile s']:.1f} | {r[f'{m} ms min']:.1f} |"
            )
    lines += [
        "",
        "Largest gradient entry (for scale): " + ", ".join(f"tol {r['tol']:.0e}: {r['grad max abs']:.2e}" for r in rows),
        "",
        "Machine:",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    a, b = GOAL_PAIR
    if a in methods and b in methods:
        ok = sum(r[f"{a}/{b}"] <= TIME_GOAL for r in rows)
        lines += ["", f"Goal: {a} time <= {TIME_GOAL:.1f} x {b} -- met in {ok}/{len(rows)} cells"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tols", default="1e-3,1e-5,1e-7")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=None, help="write the table to this .md or .csv file as well")
    args = ap.parse_args(argv)
    tols = [float(x) for x in args.tols.split(",") if x.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}; allowed: {', '.join(METHODS)}")

    info = machine_info("jax", "jaxlib", "diffrax", "equinox")
    try:
        info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    rows, notes = [], []
    for tol in tols:
        row = run_cell(tol, methods, args.repeats, args.warmup, notes)
        rows.append(row)
        print(f"  tol={tol:.0e}: " + ", ".join(f"{m} {row[f'{m} ms']:.1f} ms" for m in methods), flush=True)
    try:
        info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    text = markdown(rows, methods, info, args.repeats, args.warmup)
    if notes:
        text += "\n\nNotes:\n\n" + "\n".join(f"- {n}" for n in notes)
    print()
    print(text)
    if args.out:
        if args.out.endswith(".csv"):
            with open(args.out, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        else:
            with open(args.out, "w") as fh:
                fh.write(text + "\n")
        print(f"\nwritten: {args.out}")
    a, b = GOAL_PAIR
    if a in methods and b in methods:
        return 0 if all(r[f"{a}/{b}"] <= TIME_GOAL for r in rows) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
