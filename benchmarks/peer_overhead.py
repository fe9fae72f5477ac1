"""What odebench adds to a peer library: one CNF training step through the harness's trainer
and a peer backend, against the same step calling the library directly (not a test).

    python -m benchmarks.peer_overhead [--peers torchdiffeq-adjoint,...] [--tol 1e-5]
                                       [--repeats 100] [--warmup 3]

Results: docs/measurements/peer-overhead.md.

Both sides build the cnf task's fast-default problem (8gaussians, batch 256, 64x3 concatsquash,
exact trace, float32, seed 0) and take the same Adam steps, so they solve the same ODEs: the
losses are checked equal step by step to 1e-3 relative (not bit for bit: the harness's y0
requires grad, for the marker that closes its backward count, which changes float32 rounding
in the 6th digit), i.e. the same work was timed.

    harness: the task's trainer (odebench's TorchTrainer / JaxTrainer), odeint = the peer
             backend bound as in a grid cell; time = the row's time_forward_s + time_backward_s
             (JAX: the jitted value_and_grad program; the trainer's extra forward-only run,
             which it times apart to split forward from backward, is not counted).
    direct:  zero_grad, the loss with the library called as a user would (torchdiffeq.odeint /
             odeint_adjoint on the task's nn.Module; diffrax.diffeqsolve with the same
             controller inside one jitted value_and_grad), backward; the same clocks.

Steps alternate which side goes first.  Both sides take the same step (same parameters, same
NFE), so the figure is the median over --repeats (after --warmup) of the per-step ratio
harness / direct, with a distribution-free 95 % interval for that median.  Goal: the median
ratio <= 1.02.
"""

from __future__ import annotations

import statistics
import sys

import numpy as np

from benchmarks.problems import task_problem
from benchmarks.tooling import (clock, count, interleaved, machine_info, machine_lines, markdown_table, median_interval,
                                names, parser, positive_int, tolerance)
from odebench.plugins import make_registry
from odebench.protocols import BoundOdeint
from odebench.solve.options import ADAPTIVE_DEFAULTS
from odebench.specs import SolveStats

GOAL = 1.02
PEERS = ("torchdiffeq-adjoint", "torchdiffeq-backprop", "diffrax-backsolve", "diffrax-recursive-checkpoint")


def torch_direct(peer: str, tol: float):
    import torchdiffeq

    o = ADAPTIVE_DEFAULTS
    kwargs = dict(method="dopri5", rtol=tol, atol=tol, options=dict(safety=o["safety"], ifactor=o["ifactor"],
                                                                   dfactor=o["dfactor"], max_num_steps=o["max_steps"]))
    solve = torchdiffeq.odeint_adjoint if peer.endswith("adjoint") else torchdiffeq.odeint
    return lambda func, y0, t: solve(func, y0, t, **kwargs)


class TorchDirect:
    """The CNF step written against the library: zero_grad, loss, backward, Adam."""

    def __init__(self, problem, solve) -> None:
        import torch

        self.problem, self.solve = problem, solve
        self.optimizer = torch.optim.Adam(problem.model.parameters(), **problem.optimizer[1])

    def step(self, iteration: int):
        batch = self.problem.batch(iteration)
        self.optimizer.zero_grad(set_to_none=True)
        elapsed, loss = clock(lambda: self._loss_backward(batch))
        self.optimizer.step()
        return float(loss.detach()), elapsed

    def _loss_backward(self, batch):
        loss = self.problem.loss(batch, self.solve)
        loss.backward()
        return loss


class JaxDirect:
    """The CNF step written against diffrax: one jitted value_and_grad, then optax's Adam."""

    def __init__(self, problem, peer: str, tol: float) -> None:
        import diffrax
        import jax
        import optax
        from odebench_jax import make_optimizer

        o = ADAPTIVE_DEFAULTS
        adjoint = diffrax.BacksolveAdjoint() if peer.endswith("backsolve") else diffrax.RecursiveCheckpointAdjoint()

        def solve(func, y0, t, args=None):
            controller = diffrax.PIDController(rtol=tol, atol=tol, safety=o["safety"], factormin=o["dfactor"],
                                               factormax=o["ifactor"])
            sol = diffrax.diffeqsolve(diffrax.ODETerm(func), diffrax.Dopri5(), t[0], t[-1], None, y0, args,
                                      saveat=diffrax.SaveAt(ts=t), stepsize_controller=controller, adjoint=adjoint,
                                      max_steps=o["max_steps"])
            return sol.ys

        self.problem, self.params = problem, problem.model
        self.optimizer = make_optimizer(*problem.optimizer)
        self.opt_state = self.optimizer.init(self.params)
        self.grad = jax.jit(jax.value_and_grad(lambda p, b: problem.loss_fn(p, b, solve)))
        self.update = jax.jit(lambda g, s, p: self._update(g, s, p))
        self.optax = optax

    def _update(self, grads, state, params):
        updates, state = self.optimizer.update(grads, state, params)
        return self.optax.apply_updates(params, updates), state

    def step(self, iteration: int):
        import jax

        batch = self.problem.batch(iteration)
        elapsed, (value, grads) = clock(lambda: self.grad(self.params, batch), sync=jax.block_until_ready)
        self.params, self.opt_state = self.update(grads, self.opt_state, self.params)
        return float(value), elapsed


def sides(reg, peer: str, tol: float):
    framework = reg.get("backend", peer).spec.framework
    odeint = BoundOdeint(reg.backend(peer), "dopri5", tol, tol, None, SolveStats())
    harness = reg.runtime(framework).trainer(task_problem("cnf", framework, {}, registry=reg), odeint, "cpu")
    direct_problem = task_problem("cnf", framework, {}, registry=reg)
    if framework == "torch":
        direct = TorchDirect(direct_problem, torch_direct(peer, tol))
    else:
        direct = JaxDirect(direct_problem, peer, tol)
    return harness, direct


def run_cell(reg, peer: str, tol: float, repeats: int, warmup: int) -> dict:
    harness, direct = sides(reg, peer, tol)
    times = {"harness": [], "direct": []}
    for i, order in interleaved(("harness", "direct"), warmup + repeats):
        losses = {}
        for side in order:
            if side == "harness":
                result = harness.step(i)
                losses[side], elapsed = result.loss, result.time_forward_s + result.time_backward_s
            else:
                losses[side], elapsed = direct.step(i)
            if i >= warmup:
                times[side].append(elapsed)
        if not np.isclose(losses["harness"], losses["direct"], rtol=1e-3, atol=1e-6):
            raise SystemExit(f"{peer}: step {i} losses differ ({losses}): the two sides did not do the same work")
    h, d = statistics.median(times["harness"]), statistics.median(times["direct"])
    ratios = [a / b for a, b in zip(times["harness"], times["direct"])]  # the same step, both sides
    low, high = median_interval(ratios)
    nfe = harness.odeint.stats
    return {"peer": peer, "tol": tol, "harness ms": 1e3 * h, "direct ms": 1e3 * d,
            "ratio": statistics.median(ratios), "ratio low": low, "ratio high": high,
            "nfe forward/step": nfe.nfe_forward / (warmup + repeats), "nfe backward/step": nfe.nfe_backward / (warmup + repeats)}


def markdown(rows: list) -> str:
    return markdown_table(
        ["peer", "tol", "harness ms", "direct ms", "harness / direct, same step (95 % interval)", "NFE fwd / bwd per step"],
        [[r["peer"], f"{r['tol']:.0e}", f"{r['harness ms']:.1f}", f"{r['direct ms']:.1f}",
          f"{r['ratio']:.3f} ({r['ratio low']:.3f}–{r['ratio high']:.3f})",
          f"{r['nfe forward/step']:.0f} / {r['nfe backward/step']:.0f}"] for r in rows])


def main(argv=None) -> int:
    ap = parser(__doc__, "python -m benchmarks.peer_overhead")
    ap.add_argument("--peers", type=names(PEERS, "peer"), default=",".join(PEERS))
    ap.add_argument("--tol", type=tolerance, default=1e-5)
    ap.add_argument("--repeats", type=positive_int, default=100)
    ap.add_argument("--warmup", type=count, default=3)
    args = ap.parse_args(argv)
    reg = make_registry()
    rows = []
    for peer in args.peers:
        rows.append(run_cell(reg, peer, args.tol, args.repeats, args.warmup))
        print(rows[-1], flush=True)
    print("\n" + machine_lines(machine_info("torch", "torchdiffeq", "jax", "diffrax")) + "\n")
    print(markdown(rows))
    return 0 if all(r["ratio"] <= GOAL for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
