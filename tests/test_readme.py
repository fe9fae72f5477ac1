"""The README's "calling a backend directly" examples run as printed and count what they say."""

from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(heading: str) -> str:
    text = README.read_text()
    assert heading in text, f"README lost the section {heading!r}"
    return text[text.index(heading):].split("```python", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("heading, framework", [
    ("## Calling a backend directly", "torch"),
    ("### Calling a JAX backend directly", "jax"),
])
def test_readme_backend_example_runs(heading, framework):
    pytest.importorskip(framework)
    namespace: dict = {"print": lambda *a, **k: None}
    exec(compile(_python_block(heading), f"README:{heading}", "exec"), namespace)
    if framework == "jax":
        import jax

        jax.effects_barrier()  # the counts leave the compiled program through callbacks
    stats = namespace["stats"] if framework == "jax" else namespace["backend"].last_stats
    # an adjoint backend after one backward: forward steps taken, a backward solve counted
    assert stats.nfe_forward > 0 and stats.steps_accepted > 0
    assert stats.nfe_backward > 0 and stats.steps_accepted_backward > 0


def test_readme_counts_as_data_example_runs():
    """The JAX section's second example (counts returned as data) runs after the first and
    counts what the first one's callback counted."""
    import textwrap

    pytest.importorskip("jax")
    import jax

    heading = "### Calling a JAX backend directly"
    text = README.read_text()
    section = text[text.index(heading):]
    second = section.split("```python", 2)[2].split("```", 1)[0]
    namespace: dict = {"print": lambda *a, **k: None}
    exec(compile(_python_block(heading), "README:first", "exec"), namespace)
    jax.effects_barrier()
    exported = namespace["stats"]
    namespace["SolveStats"] = type(exported)
    exec(compile(textwrap.dedent(second), "README:counts-as-data", "exec"), namespace)
    returned = namespace["stats"]
    assert returned is not exported and returned == exported and returned.nfe_backward > 0
