"""What every benchmark script does the same way, written once: arguments, the clock,
interleaving, the statistics of repeats, counting evaluations, tables, the machine and fresh
processes.

The scripts compare odebench with a peer on a noisy shared machine, so the rules here are
about making two figures comparable:

* the two sides run **interleaved**, repeat by repeat, the order rotating (``interleaved``),
  so that a slow second on the machine hits both;
* a figure is a **median** of repeats, and a ratio comes with its **quartiles taken repeat by
  repeat** (``quartiles``, ``median_interval``): a ratio of medians near 1 means little when
  its spread straddles 1;
* **evaluations are counted** inside the vector field (``EvalCounter``), the same way for both
  libraries, in untimed runs where a count would cost time;
* the clock stops only when the result is ready (``clock``'s ``sync``: JAX dispatches
  asynchronously);
* every table says what it was measured on (``machine_info``: the host's provenance, as every
  result row records it, plus what a benchmark adds: threads, device, load).

Nothing here imports torch or jax at module level.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- arguments


class Parser(argparse.ArgumentParser):
    """argparse with odebench's rule for bad input: one line on stderr, exit 2, before anything
    runs (argparse's own prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser(doc: str, prog: str) -> Parser:
    """A script's parser: its docstring's first paragraph as the description."""
    return Parser(prog=prog, description=doc.split("\n\n")[0])


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def count(text: str) -> int:
    """A number of repeats that may be 0 (warm-up)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 0")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def tolerances(text: str) -> list:
    """Comma-separated positive, finite tolerances: '1e-3,1e-5'."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"tolerance {part!r} is not a positive number")
        values.append(value)
    return values


def tolerance(text: str) -> float:
    """One positive, finite tolerance."""
    values = tolerances(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"one tolerance expected, got {text!r}")
    return values[0]


def names(allowed: Sequence[str], what: str) -> Callable[[str], list]:
    """An argument type: comma-separated names, each one of ``allowed`` (``what``: what they
    are, for the error line)."""

    def parse(text: str) -> list:
        chosen = [p.strip() for p in text.split(",") if p.strip()]
        unknown = [p for p in chosen if p not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {', '.join(unknown) or repr(text)}; "
                                             f"the {what}s are {', '.join(allowed)}")
        return chosen

    parse.__name__ = what  # argparse names the type in its messages
    return parse


# --------------------------------------------------------------------------- the clock


def clock(fn: Callable, sync: Callable | None = None) -> tuple:
    """(seconds, result) of ``fn()``; ``sync(result)`` runs inside the clock, so an
    asynchronous result (JAX: ``jax.block_until_ready``) is timed until it is ready."""
    start = time.perf_counter()
    result = fn()
    if sync is not None:
        result = sync(result)
    return time.perf_counter() - start, result


def interleaved(sides: Sequence, repeats: int) -> Iterator[tuple]:
    """(i, order) for each repeat: all sides, the first rotating one place each repeat (two
    sides alternate), so that no side always runs first, after the other's caches."""
    sides = list(sides)
    for i in range(repeats):
        k = i % len(sides)
        yield i, sides[k:] + sides[:k]


# --------------------------------------------------------------------------- statistics


def quartiles(values: Sequence[float]) -> tuple:
    """(first quartile, third quartile); one value is both."""
    values = list(values)
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def median_interval(values: Sequence[float], z: float = 1.96) -> tuple:
    """A distribution-free ~95 % interval for the median: the order statistics n/2 -+ z*sqrt(n)/2
    (the binomial's normal approximation), so no assumption about the noise's shape."""
    ordered = sorted(values)
    n = len(ordered)
    half = z * n ** 0.5 / 2
    return ordered[max(int(n / 2 - half), 0)], ordered[min(int(n / 2 + half), n - 1)]


# --------------------------------------------------------------------------- counting


class EvalCounter:
    """Evaluations of a vector field, counted as they happen, the same way for odebench and a
    peer library (a library's own counters are then cross-checked against it).

    ``torch_module(inner)`` wraps an ``nn.Module`` ``f(t, y)`` (its parameters stay the inner
    module's, so the adjoints see the same ones); ``jax_field(field)`` wraps ``f(t, y, args)``
    with a host callback per evaluation, which costs time: count in untimed runs."""

    def __init__(self) -> None:
        self.calls = 0

    def bump(self) -> None:
        self.calls += 1

    def torch_module(self, inner):
        return _counting_module_class()(inner, self)

    def jax_field(self, field):
        import jax

        def counted(t, y, args):
            jax.debug.callback(self.bump)
            return field(t, y, args)

        return counted


@functools.lru_cache(maxsize=1)
def _counting_module_class():
    from torch import nn

    class CountingModule(nn.Module):
        def __init__(self, inner, counter: EvalCounter) -> None:
            super().__init__()
            self.inner, self.counter = inner, counter

        def forward(self, t, y):
            self.counter.bump()
            return self.inner(t, y)

    return CountingModule


# --------------------------------------------------------------------------- tables and files


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], align: str = "") -> str:
    """A markdown table; ``align`` gives one letter a column, ``l`` or ``r`` (default ``l``)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align.ljust(len(header), "l")) + "|"
    return "\n".join([_row(header), rule, *(_row(r) for r in rows)])


def _row(cells: Sequence) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def save(out: str, text: str, rows: list) -> list:
    """``--out``: a .csv file gets the rows; any other name the text, and the rows as JSON
    beside it (same name, .json), so a figure the table rounds can be read exactly.  Returns
    the paths written."""
    path = Path(out)
    if path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return [str(path)]
    path.write_text(text + "\n")
    beside = path.with_suffix(".json")
    beside.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return [str(path), str(beside)]


# --------------------------------------------------------------------------- the machine


def machine_info(*packages: str) -> dict:
    """What a figure was measured on: the provenance every result row records (versions, git
    commit, host, CPU), the named packages' versions, the cores this process may use, the
    frameworks' threads or device, and the load when it started."""
    from odebench.results import provenance

    info = {k: v for k, v in provenance().items() if v is not None}
    for package in packages:
        info.setdefault(f"{package}_version", _version(package))
    info["platform"] = platform.platform()
    info["usable cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if "torch" in sys.modules:
        info["torch threads"] = sys.modules["torch"].get_num_threads()
    if "jax" in sys.modules:
        info["jax device"] = str(sys.modules["jax"].devices()[0])
        info["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "(unset)")
    if hasattr(os, "getloadavg"):
        info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_lines(info: dict) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in info.items())


# --------------------------------------------------------------------------- fresh processes


def in_processes(module: str, argv: Sequence[str], processes: int, json_flag: str = "--json") -> list:
    """``python -m module ARGV JSON_FLAG PATH`` in ``processes`` fresh processes, one after
    another; what each wrote to PATH, parsed.

    Why: a compiled program's speed depends on the process it runs in (the MLP forward's cost
    per evaluation against diffrax's came out 1.07, 1.19 and 0.88 times in three processes one
    after another, while two compilations in one process agreed within 5 %: see "A program's
    speed depends on the process it runs in" in docs/measurements/jax-vs-diffrax.md), so a
    figure pooled over processes is the one to trust."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(processes):
            out = Path(tmp) / f"out{i}.json"
            subprocess.run([sys.executable, "-m", module, *argv, json_flag, str(out)], check=True, cwd=ROOT)
            results.append(json.loads(out.read_text()))
    return results
