"""The JAX Runtime and Trainer (the contract of odebench.protocols).

The harness owns the loop and the bookkeeping; this module is the only place where jax is
driven on its behalf (the jax counterpart of ``odebench_torch.runtime``).  It needs no backend:
a model without an ODE trains here with odeint None.

Memory (``memory_kind``):

* GPU: ``jax_peak_bytes_in_use`` -- ``device.memory_stats()["peak_bytes_in_use"]`` read after
  the step.  XLA's allocator cannot reset its peak, so this is the high-water mark of the
  process so far (it includes earlier cells of the same run and the parameters and data).
* CPU: ``xla_temp_bytes`` -- ``temp_size_in_bytes`` of the compiled value-and-grad program's
  memory analysis (``jax.jit(f).lower(...).compile().memory_analysis()``): the scratch memory
  XLA plans for one training step's forward and backward, i.e. the activations kept for the
  backward pass plus the solver's working buffers.  Parameters, batch and outputs are not in
  it.  It is a static figure of the program (the same for every iteration of a cell).
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

import jax
import jax.numpy as jnp

from odebench.errors import InvalidInputError
from odebench.protocols import BoundOdeint, StepResult
from odebench.specs import SolveStats

from .counts import tally
from .step_counts import jitted_returning, returns_counts, settle

DTYPES = ("float32", "float64")
OPTIMIZERS = ("adam", "adamw", "sgd")


def _gpus() -> list:
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:  # no GPU backend in this jaxlib
        return []


def _gpu_index(device: str) -> int:
    if device == "cuda":
        return 0
    head, _, index = device.partition(":")
    if head != "cuda" or not index.isdigit():
        raise InvalidInputError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N, auto")
    return int(index)


def jax_device(device: str):
    """The jax Device for a resolved device string ("cpu", "cuda", "cuda:N")."""
    if device == "cpu":
        return jax.devices("cpu")[0]
    gpus = _gpus()
    index = _gpu_index(device)
    if index >= len(gpus):
        raise InvalidInputError(
            f"--device {device} asked for, but jax {jax.__version__} sees "
            f"{'no GPU' if not gpus else f'only {len(gpus)} GPU(s)'}; use cpu or auto"
        )
    return gpus[index]


def enable_float64() -> None:
    """float64 in jax needs the x64 switch; turn it on (arrays made earlier keep their dtype)."""
    if not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)


def block(value: Any) -> Any:
    """Wait for every array in ``value`` (a pytree) to be computed."""
    return jax.block_until_ready(value)


class JaxRuntime:
    framework = "jax"

    @staticmethod
    def resolve_device(device: str) -> str:
        if device == "auto":
            return "cuda" if _gpus() else "cpu"
        if device == "cpu":
            return device
        if device.startswith("cuda"):
            index = _gpu_index(device)
            gpus = _gpus()
            if not gpus:
                raise InvalidInputError(f"--device {device} asked for, but jax {jax.__version__} sees no GPU; use cpu or auto")
            if index >= len(gpus):
                raise InvalidInputError(
                    f"--device {device} asked for, but jax {jax.__version__} sees only {len(gpus)} GPU(s)"
                )
            return device
        raise InvalidInputError(f"unknown device {device!r}; allowed: cpu, cuda, cuda:N, auto")

    @staticmethod
    def resolve_dtype(dtype: str):
        """jnp.float32 or jnp.float64; float64 switches jax's x64 mode on (process-wide)."""
        if dtype == "float32":
            return jnp.float32
        if dtype == "float64":
            enable_float64()
            return jnp.float64
        raise InvalidInputError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")

    @staticmethod
    def seed(seed: int) -> None:
        """Seed Python's and numpy's global generators (jax has no global random state;
        tasks draw their numbers from numpy with the cell's seed)."""
        random.seed(seed)
        np.random.seed(seed % 2**32)

    @staticmethod
    def gpu_name(device: str) -> Optional[str]:
        return jax_device(device).device_kind if device.startswith("cuda") else None

    @staticmethod
    def memory_kind(device: str) -> str:
        return "jax_peak_bytes_in_use" if device.startswith("cuda") else "xla_temp_bytes"

    @staticmethod
    def synchronize(device: str, value: Any = None) -> None:
        """Wait for ``value`` (any pytree of arrays) and for pending host callbacks (the NFE
        counters).  jax dispatches asynchronously, so a clock is read only after this."""
        if value is not None:
            jax.block_until_ready(value)
        jax.effects_barrier()

    @staticmethod
    def conformance(registry):
        """The conformance kit's adapter for JAX backends (odebench.testing)."""
        from .conformance import JaxConformance

        return JaxConformance(registry)

    def trainer(self, problem, odeint: Optional[BoundOdeint], device: str) -> "JaxTrainer":
        return JaxTrainer(self, problem, odeint, device)


# --------------------------------------------------------------------------- optimizers


def make_optimizer(name: str, kwargs: dict):
    """An optax GradientTransformation from torch-style ``(name, kwargs)``.

    Same update rules and defaults as torch.optim: ``adam`` (lr, betas, eps, weight_decay as
    an L2 term added to the gradient), ``adamw`` (decoupled weight_decay, torch's default
    0.01), ``sgd`` (lr, momentum, nesterov, weight_decay).  ``learning_rate`` is accepted for
    ``lr``.  ``milestones`` (iterations) and ``gamma``: the learning rate times gamma at each
    milestone, as torch's MultiStepLR stepped once per iteration.
    """
    import optax

    if name not in OPTIMIZERS:
        raise InvalidInputError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
    kw = dict(kwargs)
    if "learning_rate" in kw:
        kw["lr"] = kw.pop("learning_rate")
    allowed = {"adam": {"lr", "betas", "eps", "weight_decay"},
               "adamw": {"lr", "betas", "eps", "weight_decay"},
               "sgd": {"lr", "momentum", "nesterov", "weight_decay", "dampening"}}[name] | {"milestones", "gamma"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise InvalidInputError(f"optimizer {name!r}: unsupported option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    lr = learning_rate(float(kw.get("lr", 1e-3)), kw.get("milestones"), float(kw.get("gamma", 0.1)))
    wd = float(kw.get("weight_decay", 0.0))
    if name in ("adam", "adamw"):
        b1, b2 = kw.get("betas", (0.9, 0.999))
        eps = float(kw.get("eps", 1e-8))
        if name == "adamw":
            return optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=float(kw.get("weight_decay", 1e-2)))
        adam = optax.adam(lr, b1=b1, b2=b2, eps=eps)
        return optax.chain(optax.add_decayed_weights(wd), adam) if wd else adam
    if float(kw.get("dampening", 0.0)) != 0.0:
        raise InvalidInputError("optimizer 'sgd': dampening other than 0 is not supported in jax")
    momentum = float(kw.get("momentum", 0.0))
    sgd = optax.sgd(lr, momentum=momentum or None, nesterov=bool(kw.get("nesterov", False)))
    return optax.chain(optax.add_decayed_weights(wd), sgd) if wd else sgd


def learning_rate(lr: float, milestones, gamma: float):
    """``lr``, or torch's MultiStepLR as an optax schedule: update k (counted from 0) uses
    lr * gamma^(number of milestones <= k), which is optax's piecewise-constant rule with the
    milestones as boundaries (checked against torch in the tests)."""
    import optax

    if not milestones:
        return lr
    return optax.piecewise_constant_schedule(lr, {int(m): gamma for m in milestones})


# --------------------------------------------------------------------------- the train step


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


class Uncounted(SolveStats):
    """Counters a backend may leave unfilled.  A backend that counts with a host callback per
    evaluation (``callback_counts = True``: the JAX peers; about 145 us a callback inside a
    value_and_grad on this CPU, against a CNF evaluation of a few hundred) skips its callbacks
    for it: the trainer times programs built with it and counts in an untimed rerun."""


class Programs(NamedTuple):
    """One cell's compiled programs for one batch signature.  ``count_loss`` / ``count_grad``:
    the same programs with the counting callbacks, run after the clock (None when the backend
    counts inside the timed programs).  ``returning``: loss and grad take a tally too and
    return the counts (``step_counts.py``)."""

    loss: Any
    grad: Any
    update: Any
    count_loss: Any = None
    count_grad: Any = None
    returning: bool = False


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
    * ``problem.optimizer`` -- ``(name, kwargs)`` in torch's spelling (see make_optimizer).
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

    Measurement (architecture.md section 4):

    * the step that compiles (the first, or one whose batch has new shapes) reports the compile
      time of the programs as ``compile_s``, apart from its run times;
    * every step runs the jitted loss alone (forward time), then the jitted
      value_and_grad; **backward time = value_and_grad time - forward time** (clamped at 0),
      each clock read after ``block_until_ready``.  The optimizer update is not timed
      (torch's optimizer.step() is not either);
    * counters: the forward-only run counts into a SolveStats of its own (``timing_stats``,
      see _timing_odeint), so the harness's SolveStats holds exactly one forward and one
      backward per step; ``jax.effects_barrier()`` makes sure every count has arrived before
      step() returns.  With odebench's own backends on a task that sets
      ``counts_as_outputs`` the two timed programs return the counts instead of calling back
      (``step_counts.py``), and they are added after the clock.
    * memory: see the module doc (``xla_temp_bytes`` of the value-and-grad program on CPU,
      the device's ``peak_bytes_in_use`` on GPU), read on the probed iterations.
    """

    def __init__(self, runtime: JaxRuntime, problem, odeint: Optional[BoundOdeint], device: str) -> None:
        import optax

        self.runtime, self.problem, self.odeint, self.device = runtime, problem, odeint, device
        self.jax_device = jax_device(device)
        self.gpu = device.startswith("cuda")
        name, kwargs = problem.optimizer
        self.optimizer = make_optimizer(name, kwargs)
        self.params = jax.device_put(problem.model, self.jax_device)
        self.opt_state = self.optimizer.init(self.params)

        loss_fn = getattr(problem, "loss_fn", None) or _loss_fn_from_protocol(problem)
        forward_odeint, self.timing_stats = _timing_odeint(odeint)
        self.count_apart = bool(getattr(getattr(odeint, "backend", None), "callback_counts", False))

        def update(grads, opt_state, params):
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        self.returning = returns_counts(problem, odeint)  # counts as outputs, no callback timed
        self._tally = jax.device_put(tally(), self.jax_device)
        if self.returning:
            self._jit_loss, self._jit_grad = jitted_returning(loss_fn, odeint)
        else:
            self._jit_loss, _ = _jitted(loss_fn, forward_odeint)
            _, self._jit_grad = _jitted(loss_fn, odeint)
        self._jit_count = None
        if self.count_apart:  # time callback-free programs; the counting ones run after the clock
            self._jit_count = (self._jit_loss, self._jit_grad)
            self._jit_loss, self._jit_grad = _jitted(loss_fn, odeint.with_stats(Uncounted()))
        self._jit_update = jax.jit(update)
        self._compiled: dict = {}  # signature of (params, batch) -> (loss, grad, update) programs
        self.temp_bytes: Optional[int] = None

    def n_params(self) -> int:
        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(self.problem.model)))

    def _programs(self, batch):
        """The three compiled programs for this batch's shapes, and the compile seconds it took
        (None when they were compiled before)."""
        key = (_signature(self.params), _signature(batch))
        if key in self._compiled:
            return self._compiled[key], None
        t0 = time.perf_counter()
        operands = (self.params, batch, self._tally) if self.returning else (self.params, batch)
        loss_c = self._jit_loss.lower(*operands).compile()
        grad_c = self._jit_grad.lower(*operands).compile()
        grads_info = grad_c.out_info[1][0] if self.returning else grad_c.out_info[1]
        update_c = self._jit_update.lower(grads_info, self.opt_state, self.params).compile()
        counting = [f.lower(self.params, batch).compile() for f in self._jit_count or ()]
        compile_s = time.perf_counter() - t0
        analysis = grad_c.memory_analysis()
        if analysis is not None:
            self.temp_bytes = int(analysis.temp_size_in_bytes)
        programs = Programs(loss_c, grad_c, update_c, *(counting or (None, None)), returning=self.returning)
        self._compiled[key] = programs
        return programs, compile_s

    def _split_counts(self, before: int) -> None:
        """A backend that counts every evaluation of a program as forward (a peer library, whose
        backward pass odebench cannot see): this step's backward = value_and_grad's count - the
        forward-only run's; ``before``: the forward count before this step's value_and_grad."""
        backend = getattr(self.odeint, "backend", None)
        if backend is None or getattr(backend, "separate_counts", True) or self.timing_stats is None:
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

        if programs.returning:
            t0, t1, t2, value, grads = self._returning_step(programs, batch)
            return self._finish(value, grads, programs, t0, t1, t2, compile_s, probe_memory)
        t0 = time.perf_counter()
        block(programs.loss(self.params, batch))
        t1 = time.perf_counter()
        value, grads = block(programs.grad(self.params, batch))
        t2 = time.perf_counter()
        if programs.count_grad is not None:  # the same work again, off the clock, to count it
            block(programs.count_loss(self.params, batch))
            block(programs.count_grad(self.params, batch))
        jax.effects_barrier()  # every count callback has reached the SolveStats
        self._split_counts(before)
        return self._finish(value, grads, programs, t0, t1, t2, compile_s, probe_memory)

    def _returning_step(self, programs: Programs, batch) -> tuple:
        """The timed runs of programs that return their counts; the counts settled after the clock."""
        t0 = time.perf_counter()
        _, forward_counts = block(programs.loss(self.params, batch, self._tally))
        t1 = time.perf_counter()
        (value, counts), (grads, tally_grad) = block(programs.grad(self.params, batch, self._tally))
        t2 = time.perf_counter()
        settle(self.odeint.backend, self.timing_stats, forward_counts)
        settle(self.odeint.backend, self.odeint.stats, counts, tally_grad)
        return t0, t1, t2, value, grads

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
        its counts go to ``timing_stats``)."""
        batch = jax.device_put(batch, self.jax_device)
        programs, _ = self._programs(batch)
        if programs.returning:
            return float(programs.loss(self.params, batch, self._tally)[0])
        return float(programs.loss(self.params, batch))

    def evaluate(self, odeint: Optional[BoundOdeint]) -> float:
        """The task's metric with the current parameters (no gradients are taken)."""
        value = float(self.problem.evaluate(odeint))
        jax.effects_barrier()
        return value
