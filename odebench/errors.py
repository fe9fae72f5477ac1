"""Errors odebench raises on purpose; each message says what was wrong and what is allowed."""


class OdebenchError(Exception):
    """Base class: the CLI prints these as one line instead of a traceback."""


class UnknownNameError(OdebenchError, KeyError):
    """A solver, backend or task name that no plugin registered."""

    def __init__(self, kind: str, name: str, known) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        listing = ", ".join(self.known) or "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {listing}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateNameError(OdebenchError):
    """Two plugins registered the same name."""


class PluginLoadError(OdebenchError):
    """A plugin named on the command line or in ODEBENCH_PLUGINS could not be imported."""


class InvalidTableauError(OdebenchError, ValueError):
    """A Butcher tableau whose coefficients contradict themselves (refused when it is built)."""


class InvalidInputError(OdebenchError, ValueError):
    """Bad arguments to a solve: tolerances, times, shapes, dtypes, options."""


class NonFiniteStateError(OdebenchError, FloatingPointError):
    """NaN or inf appeared in the state or in the dynamics' output."""


class MaxStepsError(OdebenchError, RuntimeError):
    """The adaptive solver used up max_steps before reaching the last requested time."""


class MissingDependencyError(OdebenchError, ImportError):
    """A backend or task needs a framework that is not installed."""
