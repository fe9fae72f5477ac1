"""`odebench run` with torch and jax backends side by side on the cnf task: one result file."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("jax")
pytest.importorskip("optax")
torch = pytest.importorskip("torch")

from odebench.cli import main  # noqa: E402

BACKENDS = ("torch-adjoint", "jax-adjoint", "jax-backprop")


@pytest.fixture
def one_torch_thread():
    """torch's OpenMP pool crawls on a busy small machine (and XLA has its own pool): one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_torch_and_jax_in_one_run(tmp_path, one_torch_thread):
    result = CliRunner().invoke(main, [
        "run",
        "--task", "cnf", "--backend", ",".join(BACKENDS), "--tol", "1e-3", "--steps", "3",
        "--opt", "n_train=256", "--opt", "n_test=128", "--opt", "batch_size=64", "--opt", "hidden=16",
        "--opt", "layers=1",  # jit compile time grows with depth; test_cnf_jax covers layers=2
        "--out", str(tmp_path), "--run-id", "mix", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "mix.parquet").set_index("backend")
    assert sorted(frame.index) == sorted(BACKENDS)
    assert set(frame["status"]) == {"ok"}, frame["error"].to_dict()
    assert frame.loc["torch-adjoint", "framework"] == "torch"
    assert frame.loc["jax-adjoint", "framework"] == "jax" and frame.loc["jax-backprop", "framework"] == "jax"
    assert frame.loc["torch-adjoint", "memory_kind"] == "torch_cpu_peak_allocated"
    assert frame.loc["jax-adjoint", "memory_kind"] == "xla_temp_bytes"
    assert (frame["peak_memory_bytes"] > 0).all()
    for name in ("torch-adjoint", "jax-adjoint"):
        assert frame.loc[name, "nfe_backward"] > 0
    # jax-backprop recomputes each accepted step in the backward pass (dopri5: 7 stages; f(t0, y0) once more)
    assert frame.loc["jax-backprop", "nfe_backward"] == pytest.approx(7 * frame.loc["jax-backprop", "steps_accepted"] + 1)
    assert (frame["nfe_forward"] > 0).all()
    assert frame.loc[["jax-adjoint", "jax-backprop"], "compile_s"].gt(0).all()  # jit compile, its own column
    assert pd.isna(frame.loc["torch-adjoint", "compile_s"]) and (frame["warmup_s"] > 0).all()
    assert (frame["time_forward_s"] > 0).all() and (frame["time_backward_s"] >= 0).all()
    torch_loss = frame.loc["torch-adjoint", "initial_loss"]
    for name in ("jax-adjoint", "jax-backprop"):
        assert frame.loc[name, "initial_loss"] == pytest.approx(torch_loss, rel=1e-4)
        assert frame.loc[name, "n_params"] == frame.loc["torch-adjoint", "n_params"]
        assert frame.loc[name, "metric"] == pytest.approx(frame.loc["torch-adjoint", "metric"], rel=1e-2)
        assert frame.loc[name, "baseline_metric"] == frame.loc["torch-adjoint", "baseline_metric"]
    assert frame["jax_version"].notna().all()
    for name, artifacts in frame["artifacts"].items():
        paths = json.loads(artifacts)
        assert [p.rsplit("-", 1)[1] for p in paths] == ["density.png", "nfe.png"], paths
        assert all(p.split("/")[-1].startswith(f"mix-cnf-{name}-dopri5-") for p in paths)  # the one model goes unnamed
