"""The plugin examples (docs/plugins.md), pip-installed as separate distributions, work through entry points."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import EXAMPLES, ROOT

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    sources = tmp_path_factory.mktemp("src")  # build from a copy: no build files in the checkout
    for name in ("solver_plugin", "task_plugin"):
        shutil.copytree(EXAMPLES / name, sources / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(sources / "solver_plugin"), str(sources / "task_plugin")],
        check=True, capture_output=True,
    )
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))


def odebench(env, *args):
    out = subprocess.run([sys.executable, "-m", "odebench", *args], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_installed_plugins_are_listed_with_their_distribution(installed):
    items = {r["name"]: r for r in json.loads(odebench(installed, "list", "--json"))["items"]}
    assert items["ralston"]["plugin"] == "ralston" and items["ralston"]["version"] == "0.1.0"
    assert items["decay"]["kind"] == "task" and items["decay"]["version"] == "0.1.0"


def test_installed_solver_and_task_run_on_every_torch_backend(installed, tmp_path):
    odebench(installed, "run", "--task", "decay", "--solver", "ralston",
             "--backend", "torch-backprop,torch-adjoint,torch-adjoint-seminorm", "--tol", "1e-4",
             "--steps", "20", "--out", str(tmp_path), "--run-id", "ex", "--quiet")
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "ex.parquet")
    assert list(frame["status"]) == ["ok"] * 3
    assert (frame["solver"] == "ralston").all()
    # the same seed gives the same data and initial weight on every backend: equal first losses
    assert frame["initial_loss"].max() - frame["initial_loss"].min() < 1e-6
    # training moved k towards k_true = 0.7 (initial k is drawn in [0.2, 2])
    assert (frame["metric"] < 0.2).all()
