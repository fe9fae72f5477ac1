"""What ``--resume RUN_ID`` needs: the run's grid, saved beside its results when it starts.

``<out>/<run_id>.grid.json`` holds the run's configuration and the plugin modules it loaded,
so a resumed run plans exactly the same cells and runs those without an ``ok`` row.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from .errors import InvalidInputError
from .grid import RunConfig

GRID_SUFFIX = ".grid.json"
RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_PAIRS = ("tolerances", "eval_tolerances")  # lists of (rtol, atol) pairs


def grid_path(out_dir, run_id: str) -> Path:
    return Path(out_dir) / f"{run_id}{GRID_SUFFIX}"


def save_grid(store, config: RunConfig, registry) -> None:
    """Write the run's grid once (a resumed run keeps the file it started with)."""
    path = grid_path(store.out_dir, store.run_id)
    if path.exists():
        return
    plugins, kwargs = registry.recipe if registry.recipe is not None else ((), {})
    record = {"config": dataclasses.asdict(config) | {"run_id": store.run_id},
              "plugins": list(plugins), "registry_options": {k: _plain(v) for k, v in kwargs.items()}}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(path)


def _plain(value):
    return sorted(value) if isinstance(value, (set, frozenset, tuple)) else value


def check_run_id(run_id, flag: str) -> None:
    """A run id names files (``<run_id>.parquet``): letters, digits, ``.``, ``_`` and ``-``."""
    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise InvalidInputError(f"{flag} {run_id!r}: a run id names files, so it may hold letters, digits, '.', '_' "
                                "and '-' and not start with '.' or '-' (e.g. run-20261130-101500-4242)")


def load_grid(out_dir, run_id: str) -> tuple[RunConfig, list, dict]:
    """The configuration, plugin modules and registry options of run ``run_id`` in ``out_dir``."""
    check_run_id(run_id, "--resume")
    path = grid_path(out_dir, run_id)
    if not path.exists():
        raise InvalidInputError(f"--resume {run_id}: no such run in {out_dir} (no {path.name}; give --out "
                                "the folder the run wrote to)")
    try:
        record = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        values = {k: v for k, v in record["config"].items() if k in fields}
        for key in _PAIRS:
            if values.get(key) is not None:
                values[key] = [tuple(pair) for pair in values[key]]
        config = RunConfig(**values)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"--resume {run_id}: {path} is not a grid file odebench wrote ({exc})") from None
    config.out_dir = str(out_dir)
    config.run_id = run_id
    return config, list(record.get("plugins", [])), dict(record.get("registry_options", {}))
