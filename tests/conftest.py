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
