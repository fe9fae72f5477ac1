import os
import sys
from pathlib import Path

import pytest

# The suite's grids test tasks, not execution: they run in the test's process (a fresh process
# per cell would add about 2 s of imports to each).  tests/test_executors.py runs every executor,
# and the default choice, explicitly.
os.environ.setdefault("ODEBENCH_EXECUTOR", "serial")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture
def decay_plugin(monkeypatch):
    """The example task plugin (examples/task_plugin) importable as ``odebench_decay``."""
    monkeypatch.syspath_prepend(str(EXAMPLES / "task_plugin"))
    sys.modules.pop("odebench_decay", None)
    return "odebench_decay"


@pytest.fixture(scope="module")
def jax_x64():
    """jax's float64 switch on for a module (it is process-wide), restored after it."""
    jax = pytest.importorskip("jax")
    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def pytest_ignore_collect(collection_path, config):
    """tests/benchmarks holds pytest-benchmark micro-benchmarks: collected only when asked for
    (``pytest --benchmark-only tests/benchmarks``), never by the default suite."""
    if "benchmarks" in collection_path.parts and collection_path.parent.name == "tests" or \
            collection_path.parent.name == "benchmarks" and collection_path.parent.parent.name == "tests":
        return not config.getoption("benchmark_only", False)
    return None
