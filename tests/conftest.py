import sys
from pathlib import Path

import pytest

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
