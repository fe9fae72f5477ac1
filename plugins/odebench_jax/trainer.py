"""The JAX Trainer (odebench.protocols): one cell's compiled programs, timed step by step."""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

import jax
import jax.numpy as jnp

from odebench.protocols import BoundOdeint, StepResult
from odebench.specs import SolveStats

from .counting import settle, tallied_value_and_grad
from .counts import Uncounted, tally


def block(value: Any) -> Any:
    """Wait for every array in ``value`` (a pytree) to be computed."""
    return jax.block_until_ready(value)


def _signature(tree) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((np.shape(x), str(jnp.result_type(x))) for x in leaves)


def _timing_odeint(odeint: Optional[BoundOdeint]) -> tuple:
    """(odeint, stats) for the forward-only timing program, counting into a SolveStats of its own:
    the cell's SolveStats must hold exactly one forward and one backward per step.  (None, None)
    for a model without an ODE."""
    if odeint is None:
        return None, None
    stats = SolveStats()
    return odeint.with_stats(stats), stats


def counting_of(odeint: Optional[BoundOdeint]) -> str:
    """How the trainer gets a backend's counts, from what the backend declares
    (``odebench.solve.GradientBackend``): "data" (returned by the programs, added after the
    clock), "callback" (callbacks left out of the timed programs, counted in an untimed rerun),
    "inside" (whatever the backend does in its programs; waited for), or "none" (no ODE)."""
    if odeint is None:
        return "none"
    if odeint.backend.returns_counts:
        return "data"
    return "callback" if odeint.backend.callback_counts else "inside"


class Programs(NamedTuple):
    """One cell's compiled programs for one batch signature.  ``count_loss`` / ``count_grad``:
    the same programs with the counting callbacks, run after the clock (None unless the backend
    counts by callbacks)."""

    loss: Any
    grad: Any
    update: Any
    count_loss: Any = None
    count_grad: Any = None


def _jitted(loss_fn: Callable, odeint) -> tuple:
    """(loss alone, value_and_grad of the loss), jitted, with ``odeint`` closed over."""

    def loss(params, batch):
        return loss_fn(params, batch, odeint)

    def loss_and_grad(params, batch):
        return jax.value_and_grad(lambda p: loss_fn(p, batch, odeint))(params)

    return jax.jit(loss), jax.jit(loss_and_grad)


def _loss_fn_from_protocol(problem) -> Callable:
    """A pure loss_fn(params, batch, odeint) for a problem that has only TaskProblem's
    ``loss(batch, odeint)`` reading ``problem.model``: the params are swapped in while jit traces."""

    def loss_fn(params, batch, odeint):
        saved = problem.model
        problem.model = params
        try:
            return problem.loss(batch, odeint)
        finally:
            problem.model = saved

    return loss_fn


class JaxTrainer:
    """value_and_grad + optax under jax.jit, forward and backward timed after block_until_ready.

    The problem interface (jax tasks; see ``odebench_tasks.cnf.jax_model``):

    * ``problem.model`` -- the parameters as a pytree of jax arrays (on the cell's device, in
      its dtype).  It is the initial point; the trainer writes the current parameters back to
      ``problem.model`` after every optimizer step, so ``evaluate``/``artifacts`` see them.
    * ``problem.optimizer`` -- ``(name, kwargs)`` in torch's spelling (see ``runtime.make_optimizer``).
    * ``problem.batch(iteration)`` -- a pytree of arrays holding everything random the loss
      needs at that iteration (e.g. the CNF's Hutchinson noise), so the loss stays pure.
      Batches of one cell must share shapes and dtypes (one compile per cell).
    * ``problem.loss_fn(params, batch, odeint) -> scalar`` -- pure and jittable; the odeint
      (the backend's, with solver, tolerances and counters bound) is closed over, params and
      batch are the jitted program's arguments.  (``problem.loss(batch, odeint)`` of the
      TaskProblem protocol is ``loss_fn(problem.model, batch, odeint)``.)  A problem without
      ``loss_fn`` is trained through ``loss(batch, odeint)`` with the traced params swapped
      into ``problem.model`` while jit traces -- fine when loss reads the parameters only there.
    * ``problem.evaluate(odeint) -> float``, ``extras()``, ``artifacts(odeint, out_dir, stem)``.

    Three programs are compiled once per cell, ahead of time, on the first step:
    ``loss`` (forward alone), ``value_and_grad(loss)`` and the optax update; five for a backend
    that counts by callbacks (the first two again with the callbacks, run after the clock).
    With odebench's own backends (``returns_counts``) the value-and-grad also differentiates
    with respect to a tally, whose gradient is the step's counts (``counting.py``): a solve the
    loss makes inside a ``vmap`` or ``scan`` of its own is counted too, and a solve the gradient
    does not pass through (under ``stop_gradient``) is not.

    Measurement (architecture.md section 4):

    * the step that compiles (the first, or one whose batch has new shapes) reports the compile
      time of the programs as ``compile_s``, apart from its run times;
    * every step runs the jitted loss alone (forward time), then the jitted
      value_and_grad; **backward time = value_and_grad time - forward time** (clamped at 0),
      each clock read after ``block_until_ready``.  The optimizer update is not timed
      (torch's optimizer.step() is not either);
    * counters: the harness's SolveStats holds exactly one forward and one backward per step,
      those of the value-and-grad.  odebench's backends return them from the timed program
      (the tally's gradient), added after the clock.  Other backends count inside their
      programs: the forward-only run counts into a SolveStats of its own (``timing_stats``,
      see _timing_odeint), and ``jax.effects_barrier()`` makes sure every count has arrived
      before step() returns.
    * memory: see the module doc (``xla_temp_bytes`` of the value-and-grad program on CPU,
      the device's ``peak_bytes_in_use`` on GPU), read on the probed iterations.
    """

    def __init__(self, runtime, problem, odeint: Optional[BoundOdeint], device: str) -> None:
        import optax

        self.runtime, self.problem, self.odeint, self.device = runtime, problem, odeint, device
        self.jax_device = runtime.device(device)
        self.gpu = device.startswith("cuda")
        name, kwargs = problem.optimizer
        self.optimizer = runtime.optimizer(name, kwargs)
        self.params = jax.device_put(problem.model, self.jax_device)
        self.opt_state = self.optimizer.init(self.params)

        def update(grads, opt_state, params):
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        self.counting = counting_of(odeint)
        self._tally = jax.device_put(tally(), self.jax_device)
        self._build(getattr(problem, "loss_fn", None) or _loss_fn_from_protocol(problem))
        self._jit_update = jax.jit(update)
        self._compiled: dict = {}  # signature of (params, batch) -> (loss, grad, update) programs
        self.temp_bytes: Optional[int] = None

    def _build(self, loss_fn: Callable) -> None:
        """The jitted programs (not compiled yet) for the way this backend counts."""
        odeint = self.odeint
        forward_odeint, self.timing_stats = _timing_odeint(odeint)
        self._jit_count = None
        if self.counting == "data":  # the forward program counts nothing; the grad's tally does
            self._jit_loss, _ = _jitted(loss_fn, odeint)
            self._jit_grad = tallied_value_and_grad(loss_fn, odeint)
        elif self.counting == "callback":  # time callback-free programs; the counting ones run after the clock
            self._jit_loss, self._jit_grad = _jitted(loss_fn, odeint.with_stats(Uncounted()))
            self._jit_count = (_jitted(loss_fn, forward_odeint)[0], _jitted(loss_fn, odeint)[1])
        else:
            self._jit_loss, _ = _jitted(loss_fn, forward_odeint)
            _, self._jit_grad = _jitted(loss_fn, odeint)

    def n_params(self) -> int:
        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(self.problem.model)))

    def _programs(self, batch):
        """The three compiled programs for this batch's shapes, and the compile seconds it took
        (None when they were compiled before)."""
        key = (_signature(self.params), _signature(batch))
        if key in self._compiled:
            return self._compiled[key], None
        t0 = time.perf_counter()
        tallied = self.counting == "data"
        loss_c = self._jit_loss.lower(self.params, batch).compile()
        grad_c = self._jit_grad.lower(self.params, batch, *((self._tally,) if tallied else ())).compile()
        grads_info = grad_c.out_info[1][0] if tallied else grad_c.out_info[1]
        update_c = self._jit_update.lower(grads_info, self.opt_state, self.params).compile()
        counting = [f.lower(self.params, batch).compile() for f in self._jit_count or ()]
        compile_s = time.perf_counter() - t0
        analysis = grad_c.memory_analysis()
        if analysis is not None:
            self.temp_bytes = int(analysis.temp_size_in_bytes)
        programs = Programs(loss_c, grad_c, update_c, *(counting or (None, None)))
        self._compiled[key] = programs
        return programs, compile_s

    def _split_counts(self, before: int) -> None:
        """A backend that counts every evaluation of a program as forward (a peer library, whose
        backward pass odebench cannot see): this step's backward = value_and_grad's count - the
        forward-only run's; ``before``: the forward count before this step's value_and_grad."""
        if self.odeint is None or self.odeint.backend.separate_counts:
            return
        stats, forward = self.odeint.stats, self.timing_stats.nfe_forward
        stats.nfe_backward += stats.nfe_forward - before - forward
        stats.nfe_forward = before + forward

    def _memory(self) -> Optional[int]:
        if self.gpu:
            stats = self.jax_device.memory_stats() or {}
            peak = stats.get("peak_bytes_in_use")
            return int(peak) if peak is not None else None
        return self.temp_bytes

    def step(self, iteration: int, probe_memory: bool = False) -> StepResult:
        batch = jax.device_put(self.problem.batch(iteration), self.jax_device)
        programs, compile_s = self._programs(batch)
        block(batch)
        block(self.params)
        if self.timing_stats is not None:
            self.timing_stats.reset()
        before = self.odeint.stats.nfe_forward if self.odeint is not None else 0  # earlier counts have all arrived
        tally_in = (self._tally,) if self.counting == "data" else ()
        t0 = time.perf_counter()
        block(programs.loss(self.params, batch))
        t1 = time.perf_counter()
        out = block(programs.grad(self.params, batch, *tally_in))
        t2 = time.perf_counter()
        value, grads = self._count(programs, batch, out, before)
        return self._finish(value, grads, programs, t0, t1, t2, compile_s, probe_memory)

    def _count(self, programs: Programs, batch, out, before: int) -> tuple:
        """The step's counts added to the cell's SolveStats, after the clock: (value, grads)."""
        if self.counting == "data":
            value, (grads, tally_grad) = out
            settle(self.odeint.backend, self.odeint.stats, tally_grad=tally_grad)
            return value, grads
        if programs.count_grad is not None:  # the same work again, off the clock, to count it
            block(programs.count_loss(self.params, batch))
            block(programs.count_grad(self.params, batch))
        jax.effects_barrier()  # every count callback has reached the SolveStats
        self._split_counts(before)
        return out

    def _finish(self, value, grads, programs: Programs, t0, t1, t2, compile_s, probe_memory) -> StepResult:
        """The optimizer update (untimed) and the step's result."""
        self.params, self.opt_state = programs.update(grads, self.opt_state, self.params)
        self.problem.model = self.params
        loss = float(value)
        memory = self._memory() if probe_memory else None  # read after the clock: nothing perturbed
        forward = t1 - t0
        return StepResult(loss, forward, max(t2 - t1 - forward, 0.0), peak_memory_bytes=memory, compile_s=compile_s)

    def forward_loss(self, batch) -> float:
        """The loss of the cell's compiled forward program at the current parameters (untimed;
        a backend that counts inside its programs counts it into ``timing_stats``)."""
        batch = jax.device_put(batch, self.jax_device)
        programs, _ = self._programs(batch)
        return float(programs.loss(self.params, batch))

    def evaluate(self, odeint: Optional[BoundOdeint]) -> float:
        """The task's metric with the current parameters (no gradients are taken).  A task
        compiles its evaluation with ``odebench_jax.counted_jit``, which adds the counts."""
        value = float(self.problem.evaluate(odeint))
        jax.effects_barrier()
        return value
