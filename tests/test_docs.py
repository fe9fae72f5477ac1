"""The documentation holds: the site builds with --strict (a broken link, a broken anchor or a
page missing from the navigation fails it), the README stays a front page, every measurement
page says where its figures come from, and every example on a page runs as printed.

Examples, by kind:

- ```python blocks run, page by page, in one namespace per page (a page's later blocks use its
  earlier ones), with the working directory at the repository root.
- ```bash blocks, and the ``$ `` lines of ```console blocks, are commands. ``odebench run``
  commands run with ``--dry-run`` (every name, option, data set and execution setting checked,
  nothing run); ``odebench list``, ``report`` and ``compare`` run, the last two on
  result files the test provides; ``odebench check`` is parsed and its backend and solvers
  looked up. Every ``odebench`` command runs for real in the ``slow`` stage, page by page.
  Other programs are never run: ``NOT_RUN`` says why for each, and checks what can be checked
  cheaply (a make target exists, a ``python -m`` module is importable, a path exists).
- A block preceded by ``<!-- exit 1: reason -->`` shows a run in which a cell fails on purpose:
  its ``odebench run`` commands must exit 1 in the ``slow`` stage.
- A block preceded by ``<!-- not-run: reason -->`` is only parsed (python: compiled; commands:
  parsed by the CLI), never run; such blocks must stay few, each with its reason.

Blocks in other languages (```text for printed output, ```toml) are not examples.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.rglob("*.md")) + [README]
# committed result files the report and compare examples read in place of the runs they name
FIXTURE_RESULTS = ROOT / "results" / "reference" / "cnf-peers.parquet"
MAX_NOT_RUN = 8
BUILD_ENV = dict(os.environ, NO_MKDOCS_2_WARNING="1")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    not_run: Optional[str]  # the reason given in a <!-- not-run: ... --> before the block
    exit_code: int = 0  # what its commands exit with: <!-- exit 1: why --> before it (a cell that fails on purpose)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, each with the not-run reason written just before it."""
    found, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, start = len(fence.group(1)), i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        reason = re.match(r"^\s*<!--\s*not-run:\s*(.+?)\s*-->\s*$", before)
        exit_code = re.match(r"^\s*<!--\s*exit (\d): .{10,}-->\s*$", before)
        code = "\n".join(line[indent:] for line in lines[start + 1:end])
        found.append(Block(page, start + 1, fence.group(2), code, reason.group(1) if reason else None,
                           int(exit_code.group(1)) if exit_code else 0))
        i = end + 1
    return found


def all_blocks(lang: str) -> list[Block]:
    return [b for page in PAGES for b in blocks(page) if b.lang == lang]


@dataclass
class Command:
    block: Block
    env: dict  # NAME=value assignments written before the program
    argv: list
    output: str = ""  # what a ```console block shows it printing

    @property
    def error(self) -> Optional[str]:
        """The one-line error the page shows the command printing (exit 2), if it shows one."""
        found = re.search(r"^odebench: error: (.+)$", self.output, re.M)
        return found.group(1) if found else None


def commands(block: Block) -> list[Command]:
    """The commands of a ```bash block (every line) or a ```console block (the ``$`` lines),
    continuation lines joined and comments dropped."""
    text = block.code.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        if block.lang == "console" and not line.startswith("$ "):
            if found:
                found[-1].output += line + "\n"
            continue
        words = shlex.split(line[2:] if block.lang == "console" else line, comments=True)
        env = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words:
            found.append(Command(block, env, words))
    return found


def all_commands() -> list[Command]:
    return [c for lang in ("bash", "console") for b in all_blocks(lang) for c in commands(b)]


# ---------------------------------------------------------------------------------------------
# the site


def _mkdocs(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", *args], cwd=cwd, env=BUILD_ENV,
                          capture_output=True, text=True, timeout=300)


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    out = _mkdocs("--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "measurements" / "jax-vs-diffrax" / "index.html").exists()
    # the API pages rendered from the docstrings, not left empty
    api = (tmp_path / "site" / "reference" / "specs" / "index.html").read_text()
    assert "BackendSpec" in api and "framework-free" in api


DEFECTS = {
    "none": ({}, None),
    "a broken link": ({"a.md": "# A\n\n[to nowhere](missing.md)\n"}, "missing.md"),
    "a broken anchor": ({"a.md": "# A\n\n[to b](b.md#no-such-heading)\n"}, "no-such-heading"),
    "a page missing from the navigation": ({"orphan.md": "# Orphan\n"}, "orphan.md"),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_mkdocs_yml_makes_each_defect_fail_the_build(tmp_path, defect):
    """The site's own configuration (inherited: its strict mode and validation levels) on a
    two-page site with one defect: the build fails and names it; without one it passes."""
    pytest.importorskip("mkdocs")
    pages, needle = DEFECTS[defect]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\n[to b](b.md#b)\n")
    (docs / "b.md").write_text("# B\n")
    for name, text in pages.items():
        (docs / name).write_text(text)
    (tmp_path / "mkdocs.yml").write_text(
        f"INHERIT: {ROOT / 'mkdocs.yml'}\ndocs_dir: docs\nplugins: [search]\nnav: [a.md, b.md]\n")
    out = _mkdocs("-f", str(tmp_path / "mkdocs.yml"), "-d", str(tmp_path / "site"), cwd=tmp_path)
    if needle is None:
        assert out.returncode == 0, out.stderr
    else:
        said = out.stdout + out.stderr
        assert out.returncode != 0 and "strict mode" in said and needle in said, said


# ---------------------------------------------------------------------------------------------
# the README and the measurement pages


def test_the_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    # no dated measurements, CI timings or investigation items: those live on docs/measurements/
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text)
    assert not re.search(r"\bitem \d+\b", text, re.I)
    for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", text):
        assert (ROOT / target).is_file(), f"README links to {target}, which does not exist"


@pytest.mark.parametrize("page", sorted((DOCS / "measurements").glob("*.md")), ids=lambda p: p.name)
def test_a_measurement_page_says_where_its_figures_come_from(page):
    if page.name == "index.md":
        listed = page.read_text()
        for other in (DOCS / "measurements").glob("*.md"):
            assert other.name == "index.md" or f"({other.name})" in listed, f"index.md does not list {other.name}"
        return
    head = page.read_text().split("\n## ", 1)[0]
    for row in ("machine", "versions", "date", "reproduce"):
        assert re.search(rf"^\| {row}s? \|", head, re.M), f"{page.name}: no '{row}' row at the top"


# ---------------------------------------------------------------------------------------------
# python examples


def _after_torch_call(ns, memo):
    stats = ns["backend"].last_stats  # an adjoint after one backward: both passes counted
    assert stats.nfe_forward > 0 and stats.steps_accepted > 0
    assert stats.nfe_backward > 0 and stats.steps_accepted_backward > 0


def _after_jax_tally_counts(ns, memo):
    """The jitted step's tally holds both passes' counts, the same as the loss differentiated eagerly."""
    import jax
    import jax.numpy as jnp
    from odebench.specs import SolveStats

    stats = ns["stats"]
    assert stats.nfe_forward > 0 and stats.nfe_backward > 0 and stats.steps_accepted_backward > 0
    eager = SolveStats()
    backend, func, y0, t = ns["backend"], ns["func"], ns["y0"], ns["t"]
    jax.grad(lambda p: jnp.sum(backend.odeint(func, y0, t, p, solver="dopri5", rtol=1e-5, atol=1e-5,
                                              stats=eager)[-1] ** 2))(ns["params"])
    assert stats == eager
    memo["tally"] = stats


def _after_jax_returned_counts(ns, memo):
    """A program that only solves returns the step's forward counts, and no backward ones."""
    forward, step = ns["forward"], memo["tally"]
    assert (forward.nfe_forward, forward.steps_accepted) == (step.nfe_forward, step.steps_accepted)
    assert forward.nfe_backward == 0


def _after_plugin_examples(ns, memo):
    """The page's plugin examples, run as one module, load as a plugin: each registers, and the
    solver, the backend and the executor run a detest grid together (a few solves, no training)."""
    from odebench.cli import main
    from odebench.plugins import make_registry

    registry = make_registry([memo["module"]])
    for kind, name in (("solver", "ralston"), ("backend", "torch-backprop64"), ("task", "decay"),
                       ("executor", "shuffled")):
        assert registry.get(kind, name).spec is not None
    out = CliRunner().invoke(main, [
        "run", "-p", memo["module"], "--task", "detest", "--backend", "torch-backprop,torch-backprop64",
        "--solver", "ralston", "--tol", "1e-4", "--steps", "2", "--executor", "shuffled",
        "--out", str(memo["tmp_path"]), "--quiet"])
    assert out.exit_code == 0, out.output


# After the block (of the page) that contains the key's text: what must hold.
CHECKS = {
    ("calling-backends.md", 'odebench.backend("torch-adjoint")'): _after_torch_call,
    ("calling-backends.md", "tally=tl)"): _after_jax_tally_counts,
    ("calling-backends.md", "return_counts=True))(params)"): _after_jax_returned_counts,
    ("plugins.md", "class ShuffledExecutor"): _after_plugin_examples,
}


def _python_pages():
    return [p for p in PAGES if any(b.lang == "python" for b in blocks(p))]


@pytest.mark.parametrize("page", _python_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_run(page, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    # the page's blocks run in a module of their own, as a reader's script would
    module = types.ModuleType("docs_" + re.sub(r"\W", "_", page.stem))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict = module.__dict__
    memo: dict = {"tmp_path": tmp_path, "module": module.__name__}
    for block in (b for b in blocks(page) if b.lang == "python"):
        code = compile(block.code, block.where, "exec", dont_inherit=True)
        if block.not_run:
            continue
        try:
            exec(code, namespace)
        except ModuleNotFoundError as exc:
            if exc.name in ("torch", "jax"):
                pytest.skip(f"{block.where} needs {exc.name}")
            raise
        for (name, text), check in CHECKS.items():
            if page.name == name and text in block.code:
                check(namespace, memo)


def test_every_check_finds_its_block():
    """A page rewritten so that a check's block is gone fails here, not silently."""
    for name, text in CHECKS:
        pages = [p for p in PAGES if p.name == name]
        assert any(text in b.code for p in pages for b in blocks(p) if b.lang == "python"), (name, text)


def test_few_examples_are_not_run():
    marked = [b for page in PAGES for b in blocks(page) if b.not_run]
    assert len(marked) <= MAX_NOT_RUN, [b.where for b in marked]
    for block in marked:
        assert len(block.not_run) >= 10, f"{block.where}: say why it is not run"


# ---------------------------------------------------------------------------------------------
# shell examples


def _make_target_exists(argv):
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
    assert all(t in targets for t in argv[1:]), f"no make target {argv[1:]}"


def _module_exists(argv):
    if argv[1:3] == ["-m", "venv"]:
        return
    module = argv[argv.index("-m") + 1]
    assert importlib.util.find_spec(module) is not None, f"python -m {module}: no such module"


def _paths_exist(argv):
    for word in argv[1:]:
        if word.startswith(("./", "tests/", "results/", "examples/")) and not any(c in word for c in "*<"):
            assert (ROOT / word).exists(), f"{' '.join(argv)}: {word} does not exist"


# Programs the tests never run, why, and what they check instead.
NOT_RUN = {
    "make": ("creates .venv and runs the main job, the suite, the benchmarks or the docs build: "
             "minutes to hours (the docs build is test_the_site_builds_strict)", _make_target_exists),
    "python": ("the benchmark scripts take minutes to an hour each", _module_exists),
    "python3": ("creates a virtual environment", _module_exists),
    ".venv/bin/pip": ("installs packages", None),
    "pip": ("installs into the environment; tests/test_examples.py installs the examples into a "
            "scratch folder and runs them", _paths_exist),
    "bash": ("results/reference.sh reruns every reference result: about 40 minutes", _paths_exist),
    "asv": ("builds environments and runs the suite over commits; tests/test_benchmark_suites.py "
            "checks the suite's discovery", None),
    "pytest": ("the slow tests and the micro-benchmarks take minutes", _paths_exist),
    "dask": ("starts a cluster", None),
}
ODEBENCH_RUNS_FAST = ("list", "report", "compare")  # run in the default stage; the rest are parsed


def test_every_command_is_run_or_has_a_reason():
    for command in all_commands():
        program = command.argv[0]
        if program == "odebench":
            continue
        assert program in NOT_RUN, (
            f"{command.block.where}: {program!r} is a new kind of command; run it in this test or "
            "add it to NOT_RUN with the reason")
        check = NOT_RUN[program][1]
        if check is not None:
            check(command.argv)


def _odebench_commands():
    return [c for c in all_commands() if c.argv[0] == "odebench"]


def _id(command: Command) -> str:
    return f"{command.block.where}: {' '.join(command.argv)[:70]}"


def _import_path(command: Command) -> list:
    return [str(ROOT / p) for p in command.env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _provide_result_files(argv, cwd: Path) -> list:
    """The command's arguments with its globs expanded in ``cwd``, after a result file is put
    wherever it names one that is not there (a committed reference file where it names one)."""
    args = []
    for word in argv:
        if word.endswith((".parquet", ".csv")) and not word.startswith("-"):
            matches = glob.glob(word, root_dir=cwd)
            if not matches:
                target = cwd / word.replace("*", "example")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = ROOT / word if (ROOT / word).is_file() else FIXTURE_RESULTS
                shutil.copy(source, target)
                matches = [str(target.relative_to(cwd))]
            args.extend(sorted(matches))
        else:
            args.append(word)
    return args


@pytest.mark.parametrize("command", _odebench_commands(), ids=_id)
def test_odebench_commands(command, tmp_path, monkeypatch):
    from odebench.cli import main

    for path in _import_path(command):
        monkeypatch.syspath_prepend(path)
    monkeypatch.chdir(tmp_path)  # whatever a command writes lands here
    monkeypatch.delenv("ODEBENCH_EXECUTOR", raising=False)  # the suite's serial default is not a reader's
    name, args = command.argv[1], command.argv[2:]
    if name in ODEBENCH_RUNS_FAST and not command.block.not_run:
        out = CliRunner().invoke(main, [name, *_provide_result_files(args, tmp_path)])
        allowed = (0, 1) if name == "compare" else (0,)  # compare's 1 is a regression found
        assert out.exit_code in allowed, out.output
        return
    ctx = main.commands[name].make_context(name, list(args))  # click's parser: options and values
    if command.block.not_run:
        return
    if name == "run" and ctx.params["resume"] is None:  # a resumed grid is the saved run's: parsed only
        out = CliRunner().invoke(main, ["run", *args, "--dry-run"])
        if command.error:  # the page shows it refused: the same message, before anything runs
            assert out.exit_code == 2 and f"odebench: error: {command.error}" in out.output.splitlines(), out.output
        else:
            assert out.exit_code == 0 and "dry run:" in out.output, out.output
    elif name == "check":
        import odebench

        registry = odebench.registry()
        registry.get("backend", ctx.params["backend"])
        for solver in filter(None, (ctx.params["solver"] or "").split(",")):
            registry.solver(solver)


def _pages_with_odebench_commands():
    return sorted({c.block.page for c in _odebench_commands() if not c.block.not_run})


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with_odebench_commands(), ids=lambda p: str(p.relative_to(ROOT)))
def test_odebench_commands_run(page, tmp_path):
    """Every odebench command of a page, in order, in one folder (a report reads the run before
    it), each as a process of its own: exit 0 (compare: 0 or 1)."""
    for command in (c for c in _odebench_commands() if c.block.page == page and not c.block.not_run):
        env = dict(os.environ, ODEBENCH_PROGRESS="none", PYTHONPATH=os.pathsep.join(
            _import_path(command) + [str(ROOT)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)))
        env.pop("ODEBENCH_EXECUTOR", None)  # the suite's serial default is not a reader's
        argv = _provide_result_files(command.argv[1:], tmp_path) if command.argv[1] in ("report", "compare") \
            else command.argv[1:]
        out = subprocess.run([sys.executable, "-m", "odebench", *argv], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
        allowed = (2,) if command.error else (0, 1) if command.argv[1] == "compare" \
            else (command.block.exit_code if command.argv[1] == "run" else 0,)
        assert out.returncode in allowed, f"{_id(command)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        assert command.error is None or f"odebench: error: {command.error}" in out.stderr.splitlines(), out.stderr
