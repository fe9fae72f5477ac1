"""Runs a grid of cells and measures each: one result row per cell.

A cell is (task, backend, solver, rtol, atol, seed).  The harness owns the loop, the clock
and the bookkeeping; the framework's Runtime (odebench.protocols) does the framework work
(device, seeding, synchronised clock reads, memory, the train step).  A failing cell becomes a row
with status ``failed`` and the error text, a NaN loss a row with status ``diverged``; the
other cells still run.

Measurement rules (architecture.md section 4):
- iteration 0 is the warm-up: excluded from the time medians; ``compile_s`` is the compile
  time the trainer reports, or where it compiles nothing the warm-up iteration's time;
- memory is probed on the warm-up and the last iteration only; an iteration whose timing the
  probe perturbed (``StepResult.probed``) is left out of the medians when others remain;
- NFE and steps are exact counts, averaged over all training iterations.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import resource
import statistics
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .errors import InvalidInputError, OdebenchError
from .plugins import Registry
from .protocols import BoundOdeint
from .results import ResultStore, new_run_id, now_iso, provenance, to_json
from .solve import check_tolerance
from .specs import SolveStats, TaskSpec


@dataclass(frozen=True)
class Cell:
    task: str
    backend: str
    solver: str
    rtol: float
    atol: float
    seed: int

    def label(self) -> str:
        return f"{self.task} {self.backend} {self.solver} rtol={self.rtol:g} atol={self.atol:g} seed={self.seed}"


@dataclass
class RunConfig:
    tasks: list
    backends: list
    solvers: list = field(default_factory=lambda: ["dopri5"])
    tolerances: list = field(default_factory=lambda: [(1e-5, 1e-5)])  # (rtol, atol) pairs
    seeds: list = field(default_factory=lambda: [0])
    steps: Optional[int] = None  # training iterations; None keeps the task's default
    batch_size: Optional[int] = None
    device: str = "auto"
    dtype: str = "float32"
    task_options: dict = field(default_factory=dict)  # raw "key": "value" strings or values
    solver_options: dict = field(default_factory=dict)
    out_dir: str = "results"
    csv: bool = False
    run_id: Optional[str] = None


def _coerce(field_: dataclasses.Field, raw):
    """A task option given as text (from --opt) turned into the dataclass field's type."""
    if not isinstance(raw, str):
        return raw
    kind = field_.type if isinstance(field_.type, str) else getattr(field_.type, "__name__", str(field_.type))
    kind = kind.replace("Optional[", "").rstrip("]")
    try:
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise InvalidInputError(f"task option {field_.name}={raw!r} is not a valid {kind}") from None
    return raw


def build_task_options(spec: TaskSpec, raw: dict, steps: Optional[int] = None, batch_size: Optional[int] = None):
    """The task's options dataclass from its defaults, --opt pairs, --steps and --batch-size."""
    fields = {f.name: f for f in dataclasses.fields(spec.options)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise InvalidInputError(
            f"unknown option(s) {', '.join(unknown)} for task {spec.name!r}; allowed: {', '.join(sorted(fields))}"
        )
    values = {k: _coerce(fields[k], v) for k, v in raw.items()}
    for flag, key, value in (("--steps", "iterations", steps), ("--batch-size", "batch_size", batch_size)):
        if value is not None:
            if key not in fields:
                raise InvalidInputError(f"task {spec.name!r} has no option {key!r}, so {flag} does not apply")
            values[key] = value
    try:
        return spec.options(**values)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"task {spec.name!r}: {exc}") from None


def plan(config: RunConfig, registry: Registry) -> list[Cell]:
    """Validate every name and value up front, then expand the grid (nothing has run yet)."""
    if not config.tasks or not config.backends or not config.solvers or not config.seeds or not config.tolerances:
        raise InvalidInputError("the grid is empty: give at least one task, backend, solver, tolerance and seed")
    for name in config.tasks:
        build_task_options(registry.task(name), config.task_options, config.steps, config.batch_size)
    for name in config.backends:
        registry.get("backend", name)
    for name in config.solvers:
        registry.get("solver", name)
    tolerances = [(check_tolerance("rtol", r), check_tolerance("atol", a)) for r, a in config.tolerances]
    if config.steps is not None and config.steps < 1:
        raise InvalidInputError(f"--steps must be at least 1, got {config.steps}")
    if config.batch_size is not None and config.batch_size < 1:
        raise InvalidInputError(f"--batch-size must be at least 1, got {config.batch_size}")
    return [Cell(t, b, s, r, a, seed) for t, b, s, (r, a), seed in
            itertools.product(config.tasks, config.backends, config.solvers, tolerances, config.seeds)]


def _median(xs) -> Optional[float]:
    return statistics.median(xs) if xs else None


def _mean(xs) -> Optional[float]:
    return statistics.fmean(xs) if xs else None


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def run_cell(cell: Cell, config: RunConfig, registry: Registry, run_id: str,
             progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Train and evaluate one cell; always returns a row (status ok, failed or diverged)."""
    started = time.perf_counter()
    spec = registry.task(cell.task)
    backend_spec = registry.get("backend", cell.backend).spec
    row = {
        "run_id": run_id, "timestamp": now_iso(), "task": cell.task, "backend": cell.backend,
        "framework": backend_spec.framework, "solver": cell.solver, "rtol": cell.rtol, "atol": cell.atol,
        "seed": cell.seed, "dtype": config.dtype, "status": "failed", "error": None,
        "metric_name": spec.metric_name, "metric_higher_is_better": spec.metric_higher_is_better,
        "solver_options": to_json(config.solver_options),
    }
    row.update(provenance())
    try:
        options = build_task_options(spec, config.task_options, config.steps, config.batch_size)
        row["task_options"] = to_json(dataclasses.asdict(options))
        row["steps"] = getattr(options, "iterations", None)
        row["batch_size"] = getattr(options, "batch_size", None)
        backend = registry.backend(cell.backend)
        runtime = registry.runtime(backend_spec.framework)
        device = runtime.resolve_device(config.device)
        row["device"] = device
        row["gpu"] = runtime.gpu_name(device)
        row["memory_kind"] = runtime.memory_kind(device)
        loader = spec.frameworks.get(backend_spec.framework)
        if loader is None:
            raise InvalidInputError(
                f"task {cell.task!r} has no {backend_spec.framework} implementation; "
                f"it supports: {', '.join(sorted(spec.frameworks))}"
            )
        runtime.seed(cell.seed)
        problem = loader().setup(options, seed=cell.seed, device=device, dtype=config.dtype)
        stats = SolveStats()
        odeint = BoundOdeint(backend, cell.solver, cell.rtol, cell.atol, config.solver_options or None, stats)
        trainer = runtime.trainer(problem, odeint, device)
        row["n_params"] = trainer.n_params()
        row.update(problem.extras())
        _train(trainer, stats, row["steps"] or 1, row, progress)
        if row["status"] != "diverged":
            eval_stats = SolveStats()
            eval_odeint = odeint.with_stats(eval_stats)
            t0 = time.perf_counter()
            row["metric"] = trainer.evaluate(eval_odeint)
            row["time_eval_s"] = time.perf_counter() - t0
            row["nfe_eval"] = eval_stats.nfe_forward
            out_dir = Path(config.out_dir)
            stem = f"{run_id}-{cell.task}-{cell.backend}-{cell.solver}-r{cell.rtol:g}-a{cell.atol:g}-s{cell.seed}"
            row["artifacts"] = to_json([str(p) for p in problem.artifacts(eval_odeint, out_dir, stem)])
            row["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failing cell is a row, never the end of the run
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, OdebenchError):
            row["error"] += " | " + traceback.format_exc(limit=-3).strip().replace("\n", " / ")[-800:]
    row["time_total_s"] = time.perf_counter() - started
    row["process_peak_rss_bytes"] = _peak_rss_bytes()
    return row


def _train(trainer, stats: SolveStats, iterations: int, row: dict, progress) -> None:
    """The training loop: per-iteration exact counts, timed medians, memory on probed iterations."""
    last = iterations - 1
    fwd, bwd, nfe_f, nfe_b, acc, rej, acc_b, rej_b, memory = [], [], [], [], [], [], [], [], []
    for i in range(iterations):
        stats.reset()
        probed = i == 0 or i == last
        result = trainer.step(i, probe_memory=probed)
        nfe_f.append(stats.nfe_forward)
        nfe_b.append(stats.nfe_backward)
        acc.append(stats.steps_accepted)
        rej.append(stats.steps_rejected)
        acc_b.append(stats.steps_accepted_backward)
        rej_b.append(stats.steps_rejected_backward)
        if result.peak_memory_bytes is not None:
            memory.append(result.peak_memory_bytes)
        if i == 0:
            row["compile_s"] = (result.compile_s if result.compile_s is not None
                                else result.time_forward_s + result.time_backward_s)
            row["initial_loss"] = result.loss
        elif not (result.probed and iterations > 2):
            fwd.append(result.time_forward_s)
            bwd.append(result.time_backward_s)
        row["train_loss"] = result.loss
        if progress is not None:
            progress(i + 1, iterations)
        if not math.isfinite(result.loss):
            row["status"] = "diverged"
            row["error"] = f"loss became {result.loss} at iteration {i}"
            break
    row.update({
        "nfe_forward": _mean(nfe_f), "nfe_backward": _mean(nfe_b),
        "steps_accepted": _mean(acc), "steps_rejected": _mean(rej),
        "steps_accepted_backward": _mean(acc_b), "steps_rejected_backward": _mean(rej_b),
        "nfe_forward_first": nfe_f[0] if nfe_f else None, "nfe_forward_last": nfe_f[-1] if nfe_f else None,
        "nfe_backward_last": nfe_b[-1] if nfe_b else None,
        "time_forward_s": _median(fwd), "time_backward_s": _median(bwd),
        "peak_memory_bytes": max(memory) if memory else None,
    })


def run_grid(config: RunConfig, registry: Registry, on_cell_start=None, on_cell_end=None,
             progress_factory=None) -> ResultStore:
    """Run every cell, appending each row to the store as soon as the cell ends."""
    cells = plan(config, registry)
    store = ResultStore(config.out_dir, config.run_id or new_run_id(), csv=config.csv)
    for index, cell in enumerate(cells):
        if on_cell_start:
            on_cell_start(index, len(cells), cell)
        progress = progress_factory(cell) if progress_factory else None
        try:
            row = run_cell(cell, config, registry, store.run_id, progress=progress.update if progress else None)
        finally:
            if progress:
                progress.close()
        store.append(row)
        if on_cell_end:
            on_cell_end(index, len(cells), cell, row)
    return store
