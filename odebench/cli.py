"""The ``odebench`` command line.  Bad input is one line on stderr with exit code 2 (before
anything runs); ``odebench run`` exits 1 when a cell did not finish ok, 0 when every cell did."""

from __future__ import annotations

import json
import sys
from typing import Optional

import click

from .errors import InvalidInputError, OdebenchError
from .results import is_missing
from .resume import check_run_id


class _Group(click.Group):
    """Turns odebench's own errors, and click's usage errors of a command's options (a bad
    --steps, an unknown flag), into one line and exit code 2 instead of a traceback or a usage block."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OdebenchError as exc:
            click.echo(f"odebench: error: {exc}", err=True)
            sys.exit(2)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "odebench"
            message = " ".join(exc.format_message().split())
            click.echo(f"odebench: error: {message} (see {where} --help)", err=True)
            sys.exit(2)


plugin_option = click.option(
    "-p", "plugins", multiple=True, metavar="MODULE",
    help="Import MODULE as an odebench plugin (repeatable).",
)


KINDS = ("solver", "backend", "task", "runtime", "executor")


def _registry(plugins):
    from .plugins import make_registry

    return make_registry(plugins)


@click.group(cls=_Group)
@click.version_option(package_name="odebench")
def main() -> None:
    """odebench: measure how Neural ODE solvers and gradient methods trade accuracy, NFE, time and memory.

    run: a grid of cells into a result file; report: tables and plots of result files;
    compare: two result files as ratios, exit 1 on a regression;
    list: what the plugins registered; check: the conformance kit against one backend."""


@main.command("list")
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(plugins, as_json: bool) -> None:
    """Every registered solver, backend and task, with the plugin that provided it."""
    reg = _registry(plugins)
    rows = []
    for kind in KINDS:
        for name, item in sorted(reg.entries(kind).items()):
            row = {"kind": kind, "name": name, "plugin": item.plugin, "version": item.version}
            spec = item.spec
            if kind == "solver":
                row["detail"] = (
                    f"order {spec.order}, {'adaptive' if spec.adaptive else 'fixed-step'}"
                    if hasattr(spec, "stages") else f"non-tableau ({', '.join(spec.implementations)})"
                )
            elif kind == "backend":
                row["detail"] = spec.description
                row["available"] = reg.available(name)
                row["extra"] = spec.extra or spec.framework
                if spec.solvers is not None:
                    row["solvers"] = list(spec.solvers)
            elif kind == "task":
                row["models"] = [{"name": m.name, "ode": m.ode, "description": m.description} for m in spec.model_specs]
                models = ", ".join(m.name + ("" if m.ode else " (no ODE)") for m in spec.model_specs)
                row["detail"] = f"{spec.description}; models: {models}; default tol {spec.default_tol:g}"
            else:
                row["detail"] = spec.description
                row["available"] = reg.available(name, kind)
                row["extra"] = getattr(spec, "extra", "") or name
            rows.append(row)
    if as_json:
        click.echo(json.dumps({"items": rows, "load_errors": [list(e) for e in reg.load_errors]}, indent=2))
        return
    for kind in KINDS:
        items = [r for r in rows if r["kind"] == kind]
        click.echo(f"{kind}s ({len(items)}):")
        for r in items:
            flag = "" if r.get("available", True) else f"  [not installed: pip install 'odebench[{r.get('extra')}]']"
            click.echo(f"  {r['name']:<24} {r['plugin']} {r['version']:<8} {r['detail']}{flag}")
    for name, text in reg.load_errors:
        click.echo(f"plugin {name!r} failed to load: {text}", err=True)


def _split(text: Optional[str], what: str, convert=str) -> list:
    if text is None:
        return []
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise InvalidInputError(f"{what} is empty")
    out = []
    for x in items:
        try:
            out.append(convert(x))
        except ValueError:
            raise InvalidInputError(f"{what}: {x!r} is not a valid {convert.__name__}") from None
    return out


def _seeds(text: str) -> list:
    """--seed: comma-separated integers and inclusive ranges A..B (``0..999`` is 1,000 seeds)."""
    seeds = []
    for item in _split(text, "--seed"):
        low, dots, high = item.partition("..")
        try:
            seeds += list(range(int(low), int(high) + 1)) if dots else [int(item)]
        except ValueError:
            raise InvalidInputError(f"--seed: {item!r} is not an integer or a range A..B of integers") from None
        if dots and int(high) < int(low):
            raise InvalidInputError(f"--seed: the range {item!r} is empty (A..B needs A <= B)")
    return seeds


def _tolerance_pairs(tol, rtol, atol) -> list:
    """--tol gives rtol = atol; --rtol/--atol comma lists pair up (a single value broadcasts; one
    of them alone sets both).  None when none is given: each task's default tolerance."""
    if tol is not None and (rtol is not None or atol is not None):
        raise InvalidInputError("give either --tol or --rtol/--atol, not both")
    if tol is not None:
        return [(v, v) for v in _split(tol, "--tol")]
    if rtol is None and atol is None:
        return None  # each task's default tolerance
    rtols = _split(rtol, "--rtol") or _split(atol, "--atol")
    atols = _split(atol, "--atol") or rtols
    if len(rtols) != len(atols) and 1 not in (len(rtols), len(atols)):
        raise InvalidInputError(f"--rtol has {len(rtols)} values and --atol {len(atols)}; they pair up, so give equally many (or one)")
    n = max(len(rtols), len(atols))
    rtols = rtols * n if len(rtols) == 1 else rtols
    atols = atols * n if len(atols) == 1 else atols
    return list(zip(rtols, atols))


def _eval_tolerances(text):
    """--eval-tol: None (the task's), [] ('none') or (rtol, rtol) pairs."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    return [(v, v) for v in _split(text, "--eval-tol")]


def _task_options(pairs) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInputError(f"--opt {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


@main.command("run")
@click.option("--task", default="cnf", show_default=True, help="Task name(s), comma separated.")
@click.option("--model", default=None, help="Model(s) of the task, comma separated (odebench list shows them).  "
                                            "[default: the task's ODE model]")
@click.option("--backend", default="torch-adjoint", show_default=True, help="Gradient method(s), comma separated.")
@click.option("--solver", default="dopri5", show_default=True, help="Solver(s), comma separated.")
@click.option("--tol", default=None, help="Tolerance(s) with rtol = atol, comma separated.  "
                                          "[default: the task's, e.g. cnf 1e-5, mnist 1e-3]")
@click.option("--rtol", default=None, help="Relative tolerance(s); pairs with --atol.")
@click.option("--atol", default=None, help="Absolute tolerance(s); pairs with --rtol.  [default: = rtol]")
@click.option("--eval-tol", "eval_tol", default=None,
              help="Tolerances (rtol = atol) a trained ODE model is also evaluated at, comma separated; 'none' "
                   "for no sweep.  [default: the task's, e.g. mnist 1e-1,1e-2,1e-3,1e-4,1e-5; cnf none]")
@click.option("--steps", type=int, default=None, help="Training iterations (task default if omitted).")
@click.option("--batch-size", type=int, default=None, help="Batch size (task default if omitted).")
@click.option("--seed", default="0", show_default=True, help="Seed(s), comma separated; A..B is a range.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--dtype", default=None, type=click.Choice(["float32", "float64"]),
              help="Floating-point type of every cell.  [default: the task's: float32, detest float64]")
@click.option("--out", "out_dir", default="results", show_default=True, help="Folder for the result files.")
@click.option("--csv", is_flag=True, help="Also write a CSV beside the parquet file.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Task option (repeatable), e.g. dataset=moons.")
@click.option("--solver-opt", "solver_opts", multiple=True, metavar="KEY=VALUE",
              help="Solver option (repeatable), e.g. step_size=0.05 or max_steps=2000.")
@click.option("--run-id", default=None, help="Name of the run (default: run-<date>-<time>-<pid>).")
@click.option("--executor", default=None,
              help="Where cells run: serial (this process), process (a fresh process per cell), dask.  "
                   "[default: serial for one cell, process for a grid; ODEBENCH_EXECUTOR overrides]")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Cells at a time (process), or the LocalCluster's size (dask).  Alone it selects process.")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="Stop a cell after this long; its row gets status timeout.  Needs process or dask.")
@click.option("--threads", type=int, default=None,
              help="Framework threads per cell (process, dask).  [default: cores / workers; one worker: the framework's]")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="A running Dask scheduler (tcp://host:8786) to submit the cells to (with --executor dask).")
@click.option("--resume", "resume", default=None, metavar="RUN_ID",
              help="Run the cells of run RUN_ID (in --out) that have no ok row, appending to its result file.")
@click.option("--quiet", is_flag=True, help="No progress output (bars on a terminal, lines elsewhere).")
@click.option("--dry-run", "dry_run", is_flag=True,
              help="Check everything a run checks (names, options, tolerances, the task's data, executor, device) "
                   "and print the planned cells; run and write nothing.")
@plugin_option
@click.pass_context
def run_cmd(ctx, task, model, backend, solver, tol, rtol, atol, eval_tol, steps, batch_size, seed, device, dtype, out_dir,
            csv, opts, solver_opts, run_id, executor, workers, timeout, threads, scheduler, resume, quiet, dry_run,
            plugins):
    """Run a grid of cells (task x model x backend x solver x tolerance x seed); one result row per cell.

    A model without an ODE (e.g. mnist's resnet) runs once per framework and seed.  Exit 0 when
    every cell is ok, 1 when some are not (their rows are kept), 2 on bad input (nothing ran).
    With --dry-run: exit 0 after printing the plan, 2 on bad input."""
    from .execution import ExecutorSettings
    from .runner import run_grid
    from .report import print_table
    from .results import normalise

    settings = ExecutorSettings(workers=workers, timeout=timeout, threads=threads, scheduler=scheduler)
    if resume is not None:
        reg, config = _resumed(ctx, resume, out_dir)
    else:
        check_run_id(run_id, "--run-id")
        reg, config = _registry(plugins), _config(task, model, backend, solver, tol, rtol, atol, eval_tol, steps,
                                                  batch_size, seed, device, dtype, out_dir, csv, opts, solver_opts, run_id)
    _check_devices(reg, config)
    if dry_run:
        _print_plan(config, reg, executor, settings, resume is not None)
        return
    bars = _Progress(quiet)
    try:
        store = run_grid(config, reg, on_cell_start=bars.cell_start, on_cell_end=bars.cell_end,
                         progress_factory=bars.iterations if workers == 1 else None,  # one cell's bar at a time
                         executor=executor, settings=settings,
                         resume=resume is not None)
    finally:
        bars.close()
    if resume is not None and not store.rows:
        click.echo(f"every cell of {store.run_id} already has an ok row: nothing to run ({store.path})")
        return
    print_table(normalise(__import__("pandas").DataFrame(store.rows)))
    click.echo(f"\nresults: {store.path}" + (f" and {store.csv_path}" if store.csv_path else ""))
    summary = _failure_summary(store.rows)
    if summary:
        click.echo(summary, err=True)
        sys.exit(1)


# what --resume leaves to the command line; everything else comes from the run's grid
RESUME_OPTIONS = {"out_dir", "executor", "workers", "timeout", "threads", "scheduler", "resume", "quiet", "dry_run"}


def _resumed(ctx, run_id: str, out_dir: str):
    """The registry and configuration of run ``run_id``, from the grid it saved when it started."""
    from .resume import load_grid

    given = [p for p in ctx.command.params if p.name not in RESUME_OPTIONS
             and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join(p.opts[0] for p in given)
        raise InvalidInputError(f"--resume takes the grid from run {run_id}; do not give {flags} with it "
                                "(allowed: --out, --executor, --workers, --timeout, --threads, --scheduler, --quiet, --dry-run)")
    config, plugins, options = load_grid(out_dir, run_id)
    from .plugins import make_registry

    return make_registry(plugins, **options), config


def _print_plan(config, reg, executor, settings, resume: bool) -> None:
    """--dry-run: the checked plan, one line per cell that would run; nothing is created (an
    output folder that exists must be a folder, one that does not is left to the run to make)."""
    from pathlib import Path

    from .runner import plan_run

    out = Path(config.out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out}: is an existing file, not a folder")
    planned = plan_run(config, reg, executor, settings, resume)
    done = len(planned.cells) - len(planned.todo)
    click.echo(f"dry run: {len(planned.todo)} cell(s) to run" + (f" ({done} already ok)" if done else "")
               + f" on executor {planned.executor}; results would go to {out / planned.run_id}.parquet")
    for n, i in enumerate(planned.todo, 1):
        click.echo(f"[{n}/{len(planned.todo)}] {planned.cells[i].label()}")


def _config(task, model, backend, solver, tol, rtol, atol, eval_tol, steps, batch_size, seed, device, dtype, out_dir,
            csv, opts, solver_opts, run_id):
    from .grid import RunConfig

    return RunConfig(
        tasks=_split(task, "--task"), models=_split(model, "--model") or None,
        backends=_split(backend, "--backend"), solvers=_split(solver, "--solver"),
        tolerances=_tolerance_pairs(tol, rtol, atol), eval_tolerances=_eval_tolerances(eval_tol),
        seeds=_seeds(seed), steps=steps,
        batch_size=batch_size, device=device, dtype=dtype, task_options=_task_options(opts),
        solver_options={k: _number(v) for k, v in _task_options(solver_opts).items()},
        out_dir=out_dir, csv=csv, run_id=run_id,
    )


def _row_label(row: dict) -> str:
    """A result row's cell, briefly: task model backend [solver [rtol]] seed."""
    parts = [row.get("task"), row.get("model"), row.get("backend"), row.get("solver")]
    if not is_missing(row.get("rtol")):
        parts.append(f"rtol={float(row['rtol']):g}")
    parts.append(f"seed={row.get('seed')}")
    return " ".join(str(p) for p in parts if not is_missing(p))


def _failure_summary(rows: list) -> str:
    """One line for the cells that did not finish ok, by status, with the first error of each
    status (its first line, shortened); "" when every cell is ok."""
    bad = [r for r in rows if r.get("status") != "ok"]
    if not bad:
        return ""
    parts = []
    for status in dict.fromkeys(str(r.get("status")) for r in bad):
        these = [r for r in bad if str(r.get("status")) == status]
        error = "" if is_missing(these[0].get("error")) else str(these[0]["error"]).strip()
        error = (error.splitlines() or ["no error text"])[0]
        error = error if len(error) <= 120 else error[:117] + "..."
        parts.append(f"{len(these)} {status} (first: {_row_label(these[0])}: {error})")
    return (f"odebench: {len(bad)} of {len(rows)} cells did not finish ok: {'; '.join(parts)}; "
            "their rows are in the result file (error column)")


def _number(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _check_devices(reg, config) -> None:
    """--device cuda without CUDA is an input error before any cell runs."""
    if config.device in ("cpu", "auto"):
        return
    for name in config.backends:
        if reg.available(name):
            reg.runtime(reg.get("backend", name).spec.framework).resolve_device(config.device)


PROGRESS_MODES = ("bars", "lines", "none")


def _progress_mode(quiet: bool) -> str:
    """--quiet: none; else ODEBENCH_PROGRESS if set; else bars on a terminal and plain lines
    otherwise (escape-coded bars turn CI logs and ``| tee`` files into noise)."""
    import os

    if quiet:
        return "none"
    mode = os.environ.get("ODEBENCH_PROGRESS", "").strip().lower()
    if mode and mode not in PROGRESS_MODES:
        raise InvalidInputError(f"ODEBENCH_PROGRESS={mode!r} must be one of {', '.join(PROGRESS_MODES)}")
    if mode:
        return mode
    isatty = getattr(sys.stderr, "isatty", None)
    return "bars" if isatty is not None and isatty() else "lines"


class _Progress:
    """Progress on stderr: a tqdm bar over the grid and one per cell on a terminal, one plain line
    per finished cell elsewhere, nothing with --quiet (see ``_progress_mode``)."""

    def __init__(self, quiet: bool) -> None:
        self.mode = _progress_mode(quiet)
        self.grid = None

    def cell_start(self, job) -> None:
        if self.mode != "bars" or self.grid is not None:
            return
        from tqdm import tqdm

        self.grid = tqdm(total=None, desc="grid", unit="cell", position=0)

    def iterations(self, cell):
        if self.mode != "bars":
            return None
        from tqdm import tqdm

        bar = tqdm(total=None, desc=cell.label(), unit="it", position=1, leave=False)

        class _Bar:
            def update(self, done, total):
                bar.total = total
                bar.n = done
                bar.refresh()

            def close(self):
                bar.close()

        return _Bar()

    def cell_end(self, done, total, cell, row) -> None:
        if self.grid is not None:
            self.grid.total = total
            self.grid.update(1)
            self.grid.set_postfix_str(f"last: {row['status']}")
        elif self.mode == "lines":
            click.echo(_cell_line(done, total, cell, row), err=True)

    def close(self) -> None:
        if self.grid is not None:
            self.grid.close()


def _cell_line(done, total, cell, row) -> str:
    """``[3/28] <cell label>: ok in 18.1 s (metric 3.1493)``; a failure gives its error's first line."""
    status = row.get("status")
    took = "" if is_missing(row.get("time_total_s")) else f" in {float(row['time_total_s']):.1f} s"
    line = f"[{done}/{total}] {cell.label()}: {status}{took}"
    if status == "ok" and not is_missing(row.get("metric")):
        return f"{line} (metric {float(row['metric']):.4f})"
    error = "" if is_missing(row.get("error")) else str(row["error"]).strip()
    return f"{line} ({error.splitlines()[0][:160]})" if error else line


@main.command("report")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--plot", "plot_path", default=None, type=click.Path(), help="Write the work-precision plots to this PNG.")
@click.option("--csv", "csv_path", default=None, type=click.Path(), help="Write the combined table to this CSV.")
@click.option("--html", "html_dir", default=None, type=click.Path(), metavar="OUT",
              help="Write a web page of the results (OUT/index.html, its figures beside it; one page, a section "
                   "per file) that opens offline.")
def report_cmd(files, plot_path, csv_path, html_dir):
    """Load result files (a folder: its *.parquet files) into one table, print it by task and
    backend; optionally plot it, write it as CSV or render it as a web page."""
    from .report import print_table, work_precision_plot
    from .results import check_writable_file, read_results, result_files

    for flag, path in (("--plot", plot_path), ("--csv", csv_path)):  # before anything is read or printed
        if path:
            check_writable_file(path, flag)
    if html_dir:
        from .html_report import check_target

        check_target(html_dir)
    files = result_files(files)
    frame = read_results(files)
    print_table(frame)
    click.echo(f"\n{len(frame)} rows from {len(files)} file(s)")
    if csv_path:
        frame.to_csv(csv_path, index=False)
        click.echo(f"table: {csv_path}")
    if plot_path:
        click.echo(f"plot: {work_precision_plot(frame, plot_path)}")
    if html_dir:
        from .html_report import write_html

        click.echo(f"page: {write_html(files, html_dir)}")


@main.command("compare")
@click.argument("base", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--threshold", default="10%", show_default=True,
              help="How much worse a figure may get before the comparison fails: N% or N (percent).")
def compare_cmd(base, new, threshold):
    """Compare the cells two result files have in common (NEW / BASE ratios of time per iteration,
    NFE, memory and metric), worst first; exit 1 when any figure got worse by more than the
    threshold or a cell ok in BASE is not ok in NEW, 0 otherwise (for CI)."""
    from .compare import compare_files, format_comparison, parse_threshold

    result = compare_files(base, new, parse_threshold(threshold))
    click.echo(format_comparison(result, base_name=base, new_name=new))
    sys.exit(1 if result.regressed else 0)


@main.command("check")
@click.argument("backend")
@click.option("--solver", default=None, help="Solvers to check, comma separated.  [default: dopri5,tsit5,bosh3,rk4 "
                                             "where the backend runs them]")
@plugin_option
def check_cmd(backend, solver, plugins):
    """Run the conformance kit against BACKEND: one line per check with the figure that decided
    it; exit 0 when every check passes, 1 when any fails."""
    from .testing import check_backend

    reg = _registry(plugins)
    reg.get("backend", backend)  # an unknown name is a one-line error, exit 2
    solvers = _split(solver, "--solver")
    for name in solvers:
        reg.get("solver", name)
    results = check_backend(backend, registry=reg, solvers=solvers or None)
    for result in results:
        click.echo(result.line())
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "fail", "skip")}
    click.echo(f"\n{backend}: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    sys.exit(1 if counts["fail"] else 0)
