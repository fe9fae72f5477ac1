"""Peer libraries as backends (plugins/odebench_peers): each runs odebench's conformance kit,
passing every check but the deviations found and documented in docs/peers.md; the grid refuses
what a peer cannot run before anything runs; rows from a peer carry odebench's counters."""

import json
import re
from importlib import metadata

import pandas as pd
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from odebench.cli import main  # noqa: E402
from odebench.plugins import make_registry  # noqa: E402
from odebench.testing import check_backend  # noqa: E402
from odebench.testing.checks import check_accuracy, check_gradients_fd  # noqa: E402

MAX_STEPS = "bad input: max_steps reached"
NAN_STATE = "bad input: nan appearing in the state"
# The kit's failures with dopri5, by peer: what the library does instead of odebench's contract.
KNOWN = {
    "torchdiffeq-backprop": set(),
    "torchdiffeq-adjoint": set(),
    "torchdiffeq-adjoint-seminorm": set(),
    "torchode-backprop": set(),
    "torchode-adjoint": {MAX_STEPS},  # BacksolveAdjoint takes no step limit
    "diffrax-backsolve": {NAN_STATE},  # diffrax rejects nan steps until max_steps
    "diffrax-recursive-checkpoint": {NAN_STATE},
    "diffrax-direct": {NAN_STATE},
    "jaxode-adjoint": {NAN_STATE, MAX_STEPS},  # returns the state reached, silently
}
TORCH_PEERS = [name for name in KNOWN if name.startswith("torch")]
JAX_PEERS = [name for name in KNOWN if not name.startswith("torch")]


def failures(name, solvers=("dopri5",)):
    results = check_backend(name, registry=make_registry(), solvers=list(solvers))
    assert {r.status for r in results} <= {"pass", "fail", "skip"} and len(results) >= 25
    return {r.name for r in results if r.status == "fail"}, {r.name: r for r in results}


@pytest.mark.parametrize("name", TORCH_PEERS)
def test_torch_peer_passes_the_kit_but_its_known_deviations(name):
    pytest.importorskip(name.split("-")[0])
    failed, by_name = failures(name)
    assert failed == KNOWN[name]
    assert by_name["NFE forward = evaluations counted"].status == "pass"
    if "adjoint" in name:  # the backward count is closed by the marker, and checked
        assert by_name["NFE backward = evaluations counted"].status == "pass"


@pytest.mark.slow
@pytest.mark.parametrize("name", JAX_PEERS)
def test_jax_peer_passes_the_kit_but_its_known_deviations(name):
    jax = pytest.importorskip("jax")
    pytest.importorskip("diffrax" if name.startswith("diffrax") else "jax")
    jax.clear_caches()  # free earlier kits' programs: one process aborted in XLA's compiler after three kits
    failed, by_name = failures(name)
    assert failed == KNOWN[name]
    assert by_name["gradients through a closure"].status == "pass"


@pytest.mark.parametrize("name", ["diffrax-recursive-checkpoint", "jaxode-adjoint"])
def test_jax_peer_accuracy_and_the_errors_it_gives(name):
    """The cheap half of the kit for JAX peers (the full kit compiles for minutes: slow)."""
    pytest.importorskip("diffrax" if name.startswith("diffrax") else "jax")
    from odebench.testing.checks import check_bad_inputs

    reg = make_registry()
    adapter, backend = reg.runtime("jax").conformance(reg), reg.backend(name)
    assert [r.status for r in check_accuracy(adapter, backend, ["dopri5"])] == ["pass"]
    bad = {r.name: r for r in check_bad_inputs(adapter, backend)}
    assert {n for n, r in bad.items() if r.status == "fail"} == KNOWN[name]
    assert bad["bad input: output shape"].status == "pass" and bad["bad input: nan in y0"].status == "pass"


def test_torchdiffeq_bosh3_dense_output_misses_the_tolerance():
    """torchdiffeq's bosh3 interpolates with a midpoint value of low order: outputs between
    steps are off by over 100x the tolerance scale, where odebench's bosh3 passes."""
    pytest.importorskip("torchdiffeq")
    reg = make_registry()
    adapter = reg.runtime("torch").conformance(reg)
    (peer,) = check_accuracy(adapter, reg.backend("torchdiffeq-backprop"), ["bosh3"])
    (own,) = check_accuracy(adapter, reg.backend("torch-backprop"), ["bosh3"])
    assert peer.status == "fail" and own.status == "pass", (peer, own)
    assert float(peer.figure.split("scale ")[1].split()[0]) > 100


@pytest.mark.parametrize("name", ["torchdiffeq-adjoint", "torchdiffeq-adjoint-seminorm"])
def test_torchdiffeq_adjoint_on_a_fixed_grid_is_the_continuous_gradient(name):
    """With rk4, torchdiffeq's adjoint is off finite differences by 5e-5 (its outputs between
    grid points are linear interpolants), the seminorm variant by no more: a seminorm keeps the
    step size (it was 1.6e-3 when the adjoint options dropped it)."""
    pytest.importorskip("torchdiffeq")
    reg = make_registry()
    adapter = reg.runtime("torch").conformance(reg)
    (result,) = check_gradients_fd(adapter, reg.backend(name), ["rk4"])
    error = float(result.figure.split("relative error ")[1].split()[0])
    assert result.status == "fail" and 1e-5 < error < 1e-4, result


def run(args):
    return CliRunner().invoke(main, args)


def test_grid_refuses_a_solver_the_peer_lacks_before_running(tmp_path):
    result = run(["run", "--task", "cnf", "--backend", "torch-adjoint,torchode-adjoint", "--solver", "dopri5,bosh3",
                  "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "backend 'torchode-adjoint' does not run solver(s) bosh3; it runs: dopri5, tsit5, adaptive_heun" in result.output
    assert not list(tmp_path.iterdir())


MISSING = '''
from odebench.hookspecs import hookimpl
from odebench.specs import BackendSpec


@hookimpl
def odebench_register_backends(register):
    register(BackendSpec(name="absent-adjoint", framework="torch", method="adjoint", load=lambda: None,
                         requires=("torch", "absent_peer_library_xyz"), extra="peers"))
'''


def test_a_peer_not_installed_is_listed_with_its_extra_and_refused_at_plan_time(tmp_path, monkeypatch):
    (tmp_path / "absent_peer_plugin.py").write_text(MISSING)
    monkeypatch.syspath_prepend(str(tmp_path))
    listed = run(["list", "-p", "absent_peer_plugin"])
    assert "absent-adjoint" in listed.output and "[not installed: pip install 'odebench[peers]']" in listed.output
    refused = run(["run", "-p", "absent_peer_plugin", "--task", "cnf", "--backend", "torch-adjoint,absent-adjoint",
                   "--out", str(tmp_path / "out"), "--quiet"])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert "backend 'absent-adjoint' needs absent_peer_library_xyz" in refused.output
    assert "pip install 'odebench[peers]'" in refused.output


def test_peers_run_through_the_harness_with_odebench_counters(tmp_path):
    pytest.importorskip("torchdiffeq")
    pytest.importorskip("torchode")
    backends = "torch-adjoint,torchdiffeq-adjoint,torchode-adjoint,torchdiffeq-backprop"
    result = run(["run", "--task", "cnf", "--backend", backends, "--steps", "2", "--opt", "batch_size=32",
                  "--opt", "hidden=8", "--opt", "n_test=64", "--out", str(tmp_path), "--run-id", "peers", "--quiet"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "peers.parquet").set_index("backend")
    assert set(frame["status"]) == {"ok"} and (frame["nfe_forward"] > 0).all()
    for name in ("torch-adjoint", "torchdiffeq-adjoint", "torchode-adjoint"):
        assert frame.loc[name, "nfe_backward"] > 0
    assert frame.loc["torchdiffeq-backprop", "nfe_backward"] == 0
    for name in ("torch-adjoint", "torchode-adjoint"):  # torchode reports its steps, backward too...
        assert frame.loc[name, "steps_accepted"] > 0 and frame.loc[name, "steps_accepted_backward"] > 0
    assert frame.loc["torchdiffeq-adjoint", ["steps_accepted", "steps_accepted_backward"]].isna().all()  # ...torchdiffeq doesn't
    assert frame["peak_memory_bytes"].gt(0).all() and frame["metric"].notna().all()
    assert json.loads(frame.loc["torchdiffeq-adjoint", "backend_library_versions"]) == {
        "torch": metadata.version("torch"), "torchdiffeq": metadata.version("torchdiffeq")}
    # the same model and data, so the trained loss after two steps agrees to a few percent
    losses = frame["metric"]
    assert (losses / losses.loc["torch-adjoint"] - 1).abs().max() < 0.05, losses


def test_jax_peer_timed_programs_carry_no_counting_callbacks():
    """A host callback per evaluation costs time inside the program, so the trainer times a
    JAX peer's programs without them and counts in an untimed rerun: the timed programs hold
    no callback, the counting ones do, and the counts are the counting run's, split into
    forward (what its dopri5 steps cost: 6 per step, FSAL, plus the first evaluations) and
    backward (the rest)."""
    pytest.importorskip("diffrax")
    from odebench.protocols import BoundOdeint
    from odebench.specs import SolveStats

    reg = make_registry()
    spec = reg.get("task", "cnf").spec
    from odebench.grid import build_task_options

    problem = spec.build("jax", build_task_options(spec, {"batch_size": "32", "hidden": "8"}),
                         model=spec.default_model.name, seed=0, device="cpu", dtype="float32")
    stats = SolveStats()
    trainer = reg.runtime("jax").trainer(problem, BoundOdeint(reg.backend("diffrax-backsolve"), "dopri5", 1e-5,
                                                               1e-5, None, stats), "cpu")
    trainer.step(0)
    programs, _ = trainer._programs(problem.batch(0))
    texts = {name: getattr(programs, name).as_text() for name in ("loss", "grad", "count_loss", "count_grad")}
    callbacks = {name: len(re.findall(r'custom_call_target="[a-z_]*callback"', text)) for name, text in texts.items()}
    assert callbacks["loss"] == callbacks["grad"] == 0 and min(callbacks["count_loss"], callbacks["count_grad"]) > 0
    steps = stats.steps_accepted + stats.steps_rejected
    assert steps > 0 and 6 * steps <= stats.nfe_forward <= 6 * steps + 3 and stats.nfe_backward >= 6


@pytest.mark.parametrize("task, small", [
    ("mnist", ["--opt", "width=8", "--opt", "n_blocks=2", "--opt", "batch_size=32"]),
    ("latent-spiral", ["--opt", "n_train=40", "--opt", "n_test=20", "--opt", "batch_size=20", "--opt", "window=40",
                       "--opt", "n_extrap=30", "--opt", "n_obs=12"]),
])
def test_peers_run_the_other_tasks_in_one_table(tmp_path, task, small):
    """MNIST and the latent spirals run through a torch and a JAX peer beside odebench's own
    backend, in one run and one result file, with counted NFE."""
    pytest.importorskip("torchdiffeq")
    pytest.importorskip("diffrax")
    backends = "torch-adjoint,torchdiffeq-adjoint,diffrax-backsolve"
    result = run(["run", "--task", task, "--backend", backends, "--steps", "2", "--tol", "1e-3", "--eval-tol", "none", *small,
                  "--out", str(tmp_path), "--run-id", "peers", "--quiet"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "peers.parquet").set_index("backend")
    assert set(frame.index) == set(backends.split(",")) and set(frame["status"]) == {"ok"}
    assert (frame["nfe_forward"] > 0).all() and (frame["nfe_backward"] > 0).all()
    assert pd.isna(frame.loc["diffrax-backsolve", "steps_accepted_backward"])  # backsolve does not expose them
