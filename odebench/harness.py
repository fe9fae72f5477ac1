"""Measures one cell: trains and evaluates it and returns its result row.

The harness owns the training loop, the clock's bookkeeping and the row; the framework's Runtime
(odebench.protocols) does the framework work (device, seeding, synchronised clock reads,
memory, the train step).  The grid itself -- cells, configuration, input checks -- is
odebench.grid's; running a whole grid on an executor is odebench.runner's.  A failing cell becomes a row with status ``failed`` and the error text, a
NaN loss a row with status ``diverged``; the other cells still run.

Measurement rules (architecture.md section 4):
- iteration 0 is the warm-up: excluded from the time medians; ``compile_s`` is the compile
  time the trainer reports (None where nothing is compiled), ``warmup_s`` its run time;
- memory is probed on one iteration, the last (the warm-up when there are fewer than three):
  ``peak_memory_bytes`` and ``held_for_backward_bytes`` are that step's.  A step whose timing
  the probe perturbed (``StepResult.probed``) is left out of the medians; ``probe_slowdown`` is
  its time over the medians' (the probe's cost);
- NFE and steps are exact counts, averaged over all training iterations.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import statistics
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

from .errors import OdebenchError
from .grid import Cell, RunConfig, build_task_options, eval_tolerances, plan  # noqa: F401  (re-exported)
from .grid import solver_options
from .plugins import Registry
from .protocols import BoundOdeint
from .results import library_versions, now_iso, provenance, to_json
from .solve.setup import DEFAULT_ATOL, DEFAULT_RTOL
from .specs import SolveStats, TaskSpec


def _median(xs) -> Optional[float]:
    return statistics.median(xs) if xs else None


def _mean(xs) -> Optional[float]:
    return statistics.fmean(xs) if xs else None


def _reset_peak_rss() -> None:
    """Restart the process's peak-RSS mark (Linux: writing 5 to clear_refs resets VmHWM), so
    ``process_peak_rss_bytes`` is this cell's even when the process ran cells before it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_bytes() -> int:
    """VmHWM (reset per cell) where Linux has it, else the process's lifetime peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def framework_of(cell: Cell, registry: Registry) -> str:
    return registry.get("backend", cell.backend).spec.framework if cell.ode else cell.backend


def _new_row(cell: Cell, config: RunConfig, spec: TaskSpec, framework: str, run_id: str) -> dict:
    row = {
        "run_id": run_id, "timestamp": now_iso(), "task": cell.task, "model": cell.model, "backend": cell.backend,
        "framework": framework, "solver": cell.solver, "rtol": cell.rtol, "atol": cell.atol,
        "seed": cell.seed, "dtype": config.dtype or spec.default_dtype, "status": "failed", "error": None,
        "metric_name": spec.metric_name, "metric_higher_is_better": spec.metric_higher_is_better,
        "solver_options": to_json(config.solver_options) if cell.ode else None,
    }
    row.update(provenance())
    return row


def run_cell(cell: Cell, config: RunConfig, registry: Registry, run_id: str,
             progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Train and evaluate one cell; always returns a row (status ok, failed or diverged)."""
    _reset_peak_rss()
    started = time.perf_counter()
    spec = registry.task(cell.task)
    framework = framework_of(cell, registry)
    row = _new_row(cell, config, spec, framework, run_id)
    try:
        _train_and_evaluate(cell, config, registry, spec, framework, row, progress)
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


def stopped_row(job, registry: Registry, status: str, error: str, elapsed: float) -> dict:
    """The row of a cell whose process died or was stopped (the coordinator writes it)."""
    spec = registry.task(job.cell.task)
    row = _new_row(job.cell, job.config, spec, framework_of(job.cell, registry), job.run_id)
    row.update(status=status, error=error, time_total_s=elapsed, threads_per_cell=job.threads)
    return row


def _train_and_evaluate(cell: Cell, config: RunConfig, registry: Registry, spec: TaskSpec, framework: str,
                        row: dict, progress) -> None:
    options = build_task_options(spec, config.task_options, config.steps, config.batch_size)
    row["task_options"] = to_json(dataclasses.asdict(options))
    row["steps"] = getattr(options, "iterations", None)
    row["batch_size"] = getattr(options, "batch_size", None)
    runtime = registry.runtime(framework)
    device = runtime.resolve_device(config.device)
    row.update(device=device, gpu=runtime.gpu_name(device),
               memory_kind=runtime.memory_kind(device) if spec.trains else None)  # no training: no memory probe
    runtime.seed(cell.seed)
    problem = spec.build(framework, options, model=cell.model, seed=cell.seed, device=device,
                       dtype=config.dtype or spec.default_dtype)
    stats = SolveStats()
    odeint = None
    if cell.ode:  # a fixed-step solver ignores tolerances: it gets the backends' defaults
        solver_opts = solver_options(config, registry, spec, cell.solver, options)
        row["solver_options"] = to_json(solver_opts)
        odeint = BoundOdeint(registry.backend(cell.backend), cell.solver, cell.rtol or DEFAULT_RTOL,
                             cell.atol or DEFAULT_ATOL, solver_opts or None, stats)
    trainer = runtime.trainer(problem, odeint, device) if spec.trains else problem.trainer(odeint)
    row["n_params"] = trainer.n_params()
    history = _train(trainer, stats if cell.ode else None, row["steps"] or 1, row, progress)
    if not spec.trains:  # each step was a solve: there is no training loss
        row.update(train_loss=None, initial_loss=None)
    if cell.ode:  # steps a library does not expose are unknown, not zero
        backend_spec = registry.get("backend", cell.backend).spec
        row["backend_library_versions"] = library_versions(backend_spec.requires)
        counted = backend_spec.steps_counted
        for phase, suffix in (("forward", ""), ("backward", "_backward")):
            if phase not in counted:
                row.update(dict.fromkeys((f"steps_accepted{suffix}", f"steps_rejected{suffix}")))
    if row["status"] != "diverged":
        _evaluate(cell, config, spec, problem, trainer, odeint, row, history)
    row.update({k: v for k, v in problem.extras().items() if k not in row})


def _evaluate(cell: Cell, config: RunConfig, spec: TaskSpec, problem, trainer, odeint, row: dict, history) -> None:
    """The metric at the training tolerance, the task's extras, the test-time tolerance sweep
    (ODE models), the artifacts (the task's, and the NFE per training iteration)."""
    eval_odeint = odeint.with_stats(SolveStats()) if cell.ode else None
    t0 = time.perf_counter()
    row["metric"] = trainer.evaluate(eval_odeint)
    row["time_eval_s"] = time.perf_counter() - t0
    row["nfe_eval"] = eval_odeint.stats.nfe_forward if cell.ode else None
    row.update(problem.extras())  # now: they may describe the evaluation just done
    out_dir = Path(config.out_dir)
    stem = cell.stem(row["run_id"])
    paths = [str(p) for p in problem.artifacts(eval_odeint, out_dir, stem)]
    if cell.ode:
        tolerances = eval_tolerances(config, spec) if cell.adaptive else []  # fixed steps: nothing to sweep
        sweep = [_evaluate_at(trainer, odeint, r, a) for r, a in tolerances]
        row["eval_tolerances"] = to_json(sweep) if sweep else None
        if spec.trains and len(history[0]) >= 2:
            from .report import nfe_history_plot

            paths.append(str(nfe_history_plot(*history, out_dir / f"{stem}-nfe.png", cell.label())))
    row["artifacts"] = to_json(paths)
    row["status"] = "ok"


def _evaluate_at(trainer, odeint: BoundOdeint, rtol: float, atol: float) -> dict:
    """The trained model's metric, NFE and time when its ODE is solved at another tolerance
    (the speed/accuracy dial at test time); a failing solve is recorded, not raised."""
    at = dataclasses.replace(odeint, rtol=rtol, atol=atol, stats=SolveStats())
    entry = {"rtol": rtol, "atol": atol}
    t0 = time.perf_counter()
    try:
        entry["metric"] = float(trainer.evaluate(at))
    except OdebenchError as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
    entry.update(nfe=at.stats.nfe_forward, time_s=time.perf_counter() - t0)
    return entry


def probed_iteration(iterations: int) -> int:
    """The iteration whose memory is probed: the last, unless that leaves no timed iteration."""
    return iterations - 1 if iterations >= 3 else 0


def _train(trainer, stats: Optional[SolveStats], iterations: int, row: dict, progress) -> tuple:
    """The training loop: per-iteration exact counts (None: a model without an ODE), timed
    medians, memory on the probed iteration.  Returns the forward and backward NFE per iteration."""
    probe_at = probed_iteration(iterations)
    fwd, bwd, probe = [], [], None
    counts = {name: [] for name in SolveStats.__dataclass_fields__}
    for i in range(iterations):
        if stats is not None:
            stats.reset()
        result = trainer.step(i, probe_memory=(i == probe_at))
        if stats is not None:
            for name, value in stats.as_dict().items():
                counts[name].append(value)
        if i == probe_at:
            probe = result
        if i == 0:
            row.update(compile_s=result.compile_s, warmup_s=result.time_forward_s + result.time_backward_s,
                       initial_loss=result.loss)
        elif not result.probed:
            fwd.append(result.time_forward_s)
            bwd.append(result.time_backward_s)
        row["train_loss"] = result.loss
        if progress is not None:
            progress(i + 1, iterations)
        if not math.isfinite(result.loss):
            row["status"] = "diverged"
            row["error"] = f"loss became {result.loss} at iteration {i}"
            break
    row.update({name: _mean(values) for name, values in counts.items()})
    _summarise(row, counts, fwd, bwd, probe)
    return counts["nfe_forward"], counts["nfe_backward"]


def _summarise(row: dict, counts: dict, fwd: list, bwd: list, probe) -> None:
    nfe_f, nfe_b = counts["nfe_forward"], counts["nfe_backward"]
    row.update({
        "nfe_forward_first": nfe_f[0] if nfe_f else None, "nfe_forward_last": nfe_f[-1] if nfe_f else None,
        "nfe_backward_last": nfe_b[-1] if nfe_b else None,
        "time_forward_s": _median(fwd), "time_backward_s": _median(bwd),
    })
    if probe is None:
        return
    row["peak_memory_bytes"] = probe.peak_memory_bytes
    row["held_for_backward_bytes"] = probe.held_for_backward_bytes
    if probe.probed and fwd and row["time_forward_s"] + row["time_backward_s"] > 0:
        probed = probe.time_forward_s + probe.time_backward_s
        row["probe_slowdown"] = probed / (row["time_forward_s"] + row["time_backward_s"])
