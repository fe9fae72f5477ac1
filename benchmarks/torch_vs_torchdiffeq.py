"""Side-by-side benchmark: odebench's torch backends against torchdiffeq (not a test).

    python -m benchmarks.torch_vs_torchdiffeq [--problem mlp|mlp100|odenet|latent] [--repeats N]
                                               [--warmup W] [--tols 1e-3,1e-5,1e-7]
                                               [--methods backprop,adjoint,adjoint-warm] [--threads N]
                                               [--out table.md|table.csv]

``--out table.md`` also writes table.json, the rows as measured.  Results:
docs/measurements/torch-vs-torchdiffeq.md.

Problems (benchmarks/problems.py; same seed, weights and data for both libraries; one
iteration = zero grads + forward + loss + backward; dopri5, rtol = atol = tol):

    mlp:     dy/dt = net(y), net = Linear(2,64)-tanh-Linear(64,64)-tanh-Linear(64,2)
             (time-independent), batch 512, float32, t = [0, 1], loss = sum(y(1)**2).
    mlp100:  the same with 100 output times on [0, 1] and loss = the mean of y(t)**2 over all
             of them: both libraries interpolate between step ends (dense output).
    latent:  one training iteration of the latent-spiral task's latent ODE (its fast default:
             300 spirals, 30 irregular observations, the ODE solved at the window's 100 grid
             times); loss = the negative ELBO.
    odenet:  one training iteration of the paper's MNIST ODE-Net (the mnist task's network,
             208,266 parameters, weights drawn in numpy), batch 128 of the offline digits,
             float32, the ODE block over t = [0, 1], loss = cross-entropy of the logits.  Only
             the ODE block is solved by the library under test; stem, head and loss are shared.

Cells:

    backprop:      odebench "torch-backprop"  vs torchdiffeq.odeint
    adjoint:       odebench "torch-adjoint" with adjoint_options={"first_step": None}, the
                   backward step control of torchdiffeq (a fresh automatic first step on every
                   backward segment), vs torchdiffeq.odeint_adjoint: the same algorithm.
                   torchdiffeq's default backward norm also takes |dL/dt|, the time cotangent it
                   integrates and odebench does not compute (it is 0 for autonomous dynamics such
                   as the MLP, not for the ODE-Net's); torchdiffeq is given the norm without it,
                   max(RMS(y), RMS(a), RMS of each parameter's cotangent), which is odebench's.
    adjoint-warm:  odebench "torch-adjoint" with its defaults (each backward segment starts with
                   the step the controller proposed last) vs torchdiffeq.odeint_adjoint

Time is the median over --repeats iterations after --warmup iterations; the two libraries are
interleaved repeat by repeat (alternating which goes first) so that machine noise hits both.
NFE are counted with one counting wrapper module around the dynamics for both libraries;
odebench's own counters (backend.last_stats) are cross-checked against the wrapper.

Goal checked per cell: time ratio (odebench / torchdiffeq) <= 0.8 and forward and backward NFE
each within +-10 % of torchdiffeq's (adjoint-warm: time only; its backward step control differs
from torchdiffeq's on purpose).  Also printed: max |output difference| (y(1), or the logits)
and max |gradient difference| between the two libraries.
"""

from __future__ import annotations

import statistics
import sys

import torch

import odebench
import torchdiffeq
from benchmarks.problems import TORCH_PROBLEMS as PROBLEMS
from benchmarks.tooling import (clock, count, interleaved, machine_info, machine_lines, markdown_table, names, parser,
                                positive_int, save, tolerances)

TIME_GOAL = 0.8
NFE_GOAL = 0.10
METHODS = ("backprop", "adjoint", "adjoint-warm")


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean().sqrt()


def norm_without_time(state: tuple) -> torch.Tensor:
    """torchdiffeq's default adjoint norm without its |dL/dt| channel: the state is
    (dL/dt, y, a, *parameter cotangents), y and a single tensors here."""
    _, y, a, *params = state
    return torch.stack([_rms(y), _rms(a), *(_rms(p) for p in params)]).max()


class Runner:
    """One library's side of a cell: an iteration function plus its counters."""

    def __init__(self, lib: str, method: str, problem, tol: float) -> None:
        self.lib, self.method, self.problem, self.tol = lib, method, problem, tol
        if lib == "odebench":
            self.backend = odebench.backend("torch-backprop" if method == "backprop" else "torch-adjoint")
        # the "adjoint" cell runs torchdiffeq's backward step control: the same algorithm
        self.kwargs = {"adjoint_options": {"first_step": None}} if (lib, method) == ("odebench", "adjoint") else {}

    def solve(self, func, y0, t):
        if self.lib == "odebench":
            return self.backend.odeint(func, y0, t, solver="dopri5", rtol=self.tol, atol=self.tol, **self.kwargs)
        if self.method == "backprop":
            return torchdiffeq.odeint(func, y0, t, method="dopri5", rtol=self.tol, atol=self.tol)
        return torchdiffeq.odeint_adjoint(func, y0, t, method="dopri5", rtol=self.tol, atol=self.tol,
                                          adjoint_options={"norm": norm_without_time})

    def _forward_backward(self):
        counter = self.problem.counter
        loss, out = self.problem.loss(self.solve)
        nfe_fwd = counter.calls
        loss.backward()
        return nfe_fwd, out

    def iteration(self):
        """zero grads + forward + loss + backward; returns (seconds, nfe_fwd, nfe_bwd, output, grads)."""
        for p in self.problem.params:
            p.grad = None
        self.problem.counter.calls = 0
        elapsed, (nfe_fwd, out) = clock(self._forward_backward)
        nfe_bwd = self.problem.counter.calls - nfe_fwd
        grads = [p.grad.detach().clone() for p in self.problem.params]
        return elapsed, nfe_fwd, nfe_bwd, out.detach().clone(), grads

    def own_counts(self):
        """odebench's own counters for the last iteration (None for torchdiffeq)."""
        if self.lib != "odebench":
            return None
        s = self.backend.last_stats
        return s.nfe_forward, s.nfe_backward


def first_iterations(sides: list, warmup: int) -> dict:
    """Each side's last warm-up iteration (one iteration when there is no warm-up: the NFE and
    the solutions come from it)."""
    first = {}
    for _, order in interleaved(sides, max(warmup, 1)):
        for side in order:
            first[side.lib] = side.iteration()
    return first


def timed_repeats(sides: list, repeats: int, seen: dict) -> dict:
    """Each side's seconds per iteration over ``repeats`` interleaved repeats; the NFE of each
    repeat are added to ``seen`` (per side: they must not vary, the problem is the same)."""
    times = {side.lib: [] for side in sides}
    for _, order in interleaved(sides, repeats):
        for side in order:
            sec, fwd, bwd, _, _ = side.iteration()
            times[side.lib].append(sec)
            seen[side.lib].add((fwd, bwd))
    return times


def run_cell(problem_cls, method: str, tol: float, repeats: int, warmup: int, notes: list) -> dict:
    problem = problem_cls()
    ob, tdq = Runner("odebench", method, problem, tol), Runner("torchdiffeq", method, problem, tol)
    first = first_iterations([ob, tdq], warmup)
    own = ob.own_counts()
    _, ob_fwd, ob_bwd, ob_y, ob_g = first["odebench"]
    _, tdq_fwd, tdq_bwd, tdq_y, tdq_g = first["torchdiffeq"]
    if own != (ob_fwd, ob_bwd):
        notes.append(f"{method} tol={tol:g}: odebench last_stats NFE (fwd {own[0]}, bwd {own[1]}) != wrapper count "
                     f"(fwd {ob_fwd}, bwd {ob_bwd})")
    seen = {"odebench": {(ob_fwd, ob_bwd)}, "torchdiffeq": {(tdq_fwd, tdq_bwd)}}
    times = timed_repeats([ob, tdq], repeats, seen)
    notes += [f"{method} tol={tol:g}: {lib} NFE varied between repeats: {sorted(c)}" for lib, c in seen.items() if len(c) > 1]
    ob_ms, tdq_ms = (1e3 * statistics.median(times[lib]) for lib in ("odebench", "torchdiffeq"))
    ratio = ob_ms / tdq_ms
    fwd_ok = abs(ob_fwd - tdq_fwd) <= NFE_GOAL * tdq_fwd
    bwd_ok = abs(ob_bwd - tdq_bwd) <= NFE_GOAL * tdq_bwd or method == "adjoint-warm"  # not the same algorithm
    y_diff = float((ob_y - tdq_y).abs().max())
    return {
        "method": method, "tol": tol, "odebench_ms": ob_ms, "torchdiffeq_ms": tdq_ms, "time_ratio": ratio,
        "odebench_ms_min": 1e3 * min(times["odebench"]), "torchdiffeq_ms_min": 1e3 * min(times["torchdiffeq"]),
        "nfe_fwd_ob": ob_fwd, "nfe_fwd_tdq": tdq_fwd, "nfe_bwd_ob": ob_bwd, "nfe_bwd_tdq": tdq_bwd,
        "nfe_ratio": (ob_fwd + ob_bwd) / max(tdq_fwd + tdq_bwd, 1),
        "time_ok": ratio <= TIME_GOAL, "nfe_ok": fwd_ok and bwd_ok, "meets_goal": ratio <= TIME_GOAL and fwd_ok and bwd_ok,
        "y1_max_abs_diff": y_diff,
        "y1_diff_over_tol_scale": y_diff / float(tol + tol * torch.maximum(ob_y.abs(), tdq_y.abs()).max()),
        "grad_max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(ob_g, tdq_g)),
        "grad_max_abs": max(float(b.abs().max()) for b in tdq_g),
        "ob_stats_nfe": own,
    }


def _verdict(r: dict) -> str:
    if r["meets_goal"]:
        return "yes"
    return "NO (" + ", ".join(x for x, ok in (("time", r["time_ok"]), ("NFE", r["nfe_ok"])) if not ok) + ")"


def markdown(problem_cls, rows: list, info: dict, repeats: int, warmup: int) -> str:
    out = problem_cls.output
    cost = markdown_table(
        ["method", "tol", "odebench ms", "torchdiffeq ms", "time ratio (ob/tdq)", "NFE fwd (ob/tdq)", "NFE bwd (ob/tdq)",
         "NFE ratio", "meets goal"],
        [[r["method"], f"{r['tol']:.0e}", f"{r['odebench_ms']:.1f}", f"{r['torchdiffeq_ms']:.1f}",
          f"{r['time_ratio']:.2f}", f"{r['nfe_fwd_ob']}/{r['nfe_fwd_tdq']}", f"{r['nfe_bwd_ob']}/{r['nfe_bwd_tdq']}",
          f"{r['nfe_ratio']:.2f}", _verdict(r)] for r in rows], "llrrrrrrl")
    agreement = markdown_table(
        ["method", "tol", f"max abs diff {out}", f"diff / (atol + rtol max abs {out})", "max abs diff grad",
         "max abs grad", "odebench last_stats NFE (fwd, bwd)", "min ms (ob/tdq)"],
        [[r["method"], f"{r['tol']:.0e}", f"{r['y1_max_abs_diff']:.2e}", f"{r['y1_diff_over_tol_scale']:.2f}",
          f"{r['grad_max_abs_diff']:.2e}", f"{r['grad_max_abs']:.2e}", r["ob_stats_nfe"],
          f"{r['odebench_ms_min']:.1f}/{r['torchdiffeq_ms_min']:.1f}"] for r in rows], "llrrrrlr")
    n_ok = sum(r["meets_goal"] for r in rows)
    return "\n".join([
        "# odebench vs torchdiffeq (torch, CPU)", "",
        f"Problem: {problem_cls.description}; dopri5; rtol = atol = tol; time = forward+backward per iteration, "
        f"median of {repeats} interleaved repeats after {warmup} warm-up.", "",
        cost, "",
        f"Goal: time ratio <= {TIME_GOAL} and forward and backward NFE each within +-{NFE_GOAL:.0%} of torchdiffeq "
        "(NFE ratio column = total fwd+bwd). Backprop has no backward NFE in either library. "
        "adjoint-warm: time only (its backward starts each segment with the step the controller "
        "proposed last; torchdiffeq restarts the automatic first step).", "",
        "Agreement of the two libraries (same weights and data):", "",
        agreement, "",
        "tol bounds the local error per step, not the global error, and torchdiffeq evaluates y(1) by dense-output "
        "interpolation while odebench steps onto t = 1, so a diff/scale ratio of a few is expected; float32 "
        "rounding (eps 1.2e-7) dominates at tol 1e-7.  (For the ODE-Net the output compared is the logits.)",
        "", "Machine:", "", machine_lines(info),
        "", f"Cells meeting the goal: {n_ok}/{len(rows)}"])


def _parser():
    ap = parser(__doc__, "python -m benchmarks.torch_vs_torchdiffeq")
    ap.add_argument("--problem", default="mlp", choices=sorted(PROBLEMS))
    ap.add_argument("--repeats", type=positive_int, default=20)
    ap.add_argument("--warmup", type=count, default=2)
    ap.add_argument("--tols", type=tolerances, default="1e-3,1e-5,1e-7")
    ap.add_argument("--methods", type=names(METHODS, "method"), default=",".join(METHODS))
    ap.add_argument("--out", default=None, help="write the table to this .md (and the rows to .json beside it) "
                                                "or the rows to this .csv file as well")
    ap.add_argument("--threads", type=positive_int, default=None,
                    help="torch.set_num_threads(N); default: leave torch's default")
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    info = machine_info("torch", "torchdiffeq")
    how = "set by --threads" if args.threads is not None else "left at torch's default"
    info["torch threads"] = f"{info['torch threads']} ({how})"
    print(f"torch threads: {info['torch threads']}", flush=True)
    rows, notes = [], []
    for method in args.methods:
        for tol in args.tols:
            row = run_cell(PROBLEMS[args.problem], method, tol, args.repeats, args.warmup, notes)
            rows.append(row)
            print(f"  {method:8s} tol={tol:.0e}: odebench {row['odebench_ms']:.1f} ms, torchdiffeq "
                  f"{row['torchdiffeq_ms']:.1f} ms, ratio {row['time_ratio']:.2f}", flush=True)
    text = markdown(PROBLEMS[args.problem], rows, info, args.repeats, args.warmup)
    if notes:
        text += "\n\nNotes:\n\n" + "\n".join(f"- {n}" for n in notes)
    print()
    print(text)
    if args.out:
        print(f"\nwritten: {', '.join(save(args.out, text, rows))}")
    return 0 if all(r["meets_goal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
