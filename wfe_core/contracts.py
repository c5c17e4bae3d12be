"""The contracts between the core and executors.

Everything an executor author touches lives here: the step body they implement, the context it
receives, the result it returns, the plugin object they register under the ``wfe.executors``
entry point group, and the diagnostics their validators produce. The module imports nothing but
the standard library and attrs, so loading it is cheap and never pulls in grpc.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import attrs

if TYPE_CHECKING:
    import cattrs

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"
"""What a step output may hold: anything ``json.dumps`` accepts without help."""


class Severity(enum.StrEnum):
    """How bad a diagnostic is. Errors make compilation fail; warnings are only printed."""

    ERROR = "error"
    WARNING = "warning"


@attrs.frozen
class Diagnostic:
    """One problem found in a workflow file, with the place it was found.

    ``str(diagnostic)`` is the ``file:line:col: error[CODE]: message`` line the CLI prints;
    lines and columns are 1-based, 0 meaning "unknown".
    """

    code: str
    message: str
    file: str = "<workflow>"
    line: int = 0
    column: int = 0
    severity: Severity = Severity.ERROR
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        text = f"{where}: {self.severity}[{self.code}]: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


ConfigPath: TypeAlias = tuple["str | int", ...]
"""A path to a value inside a step's ``config:`` mapping, e.g. ``("volumes", 0, "source")``."""


@attrs.frozen
class ValidationContext:
    """What a validator needs to report precise diagnostics about one step's config.

    ``base_dir`` is the directory of the workflow file: relative paths in a config resolve
    against it, so validators that check files exist must resolve them the same way.
    """

    file: str
    workflow_id: str
    step_name: str
    base_dir: Path
    locator: Callable[[ConfigPath], tuple[int, int]] = attrs.field(
        default=lambda _path: (0, 0), repr=False
    )

    def location(self, *path: str | int) -> tuple[int, int]:
        """Line and column of ``config.<path>`` (falls back to the nearest existing parent)."""
        return self.locator(tuple(path))

    def error(
        self, code: str, message: str, *path: str | int, hint: str | None = None
    ) -> Diagnostic:
        """An error diagnostic pointing at ``config.<path>`` of this step."""
        return self._diagnostic(Severity.ERROR, code, message, path, hint)

    def warning(
        self, code: str, message: str, *path: str | int, hint: str | None = None
    ) -> Diagnostic:
        """A warning diagnostic pointing at ``config.<path>`` of this step."""
        return self._diagnostic(Severity.WARNING, code, message, path, hint)

    def _diagnostic(
        self, severity: Severity, code: str, message: str, path: ConfigPath, hint: str | None
    ) -> Diagnostic:
        line, column = self.locator(path)
        return Diagnostic(code, message, self.file, line, column, severity, hint)


Validator: TypeAlias = Callable[[Any, ValidationContext], Iterable[Diagnostic]]
"""A plugin validator: receives the structured config and yields diagnostics (none if fine).

Config strings may still hold ``${{ ... }}`` references at validation time; a validator must
accept those wherever a reference is plausible (use :func:`has_reference`)."""


def resolve_config_path(base_dir: Path, path: str | Path) -> Path:
    """A path from a config as the whole project resolves it: ``~`` expanded, and relative to
    ``base_dir`` (the workflow file's directory), never to the current directory. Validators
    and step bodies must agree on this, or a check would pass for a file the step cannot find."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base_dir / candidate


def workflow_base_dir(file: str | Path) -> Path:
    """The ``base_dir`` of the workflow file ``file``: its directory, symlinks followed (so a
    linked workflow reads paths next to its target). Compiling, where validators check paths,
    and running must agree on it, so both take it from here."""
    return Path(file).resolve().parent


def has_reference(value: object) -> bool:
    """True when a config string holds a ``${{ ... }}`` reference resolved only at run time."""
    return isinstance(value, str) and "${{" in value


@attrs.frozen
class ExecutionResult:
    """What a step returns: its outputs (JSON-compatible) and an optional outcome label."""

    outputs: Mapping[str, JSONValue] = attrs.field(factory=dict)
    outcome: str | None = None


class StepFailed(Exception):
    """Raised by a step body to fail the step with a message meant for the user.

    Outputs gathered before the failure (exit code, captured streams) travel with it, so that
    ``on_failure`` steps and the ``--json`` summary can see them.
    """

    def __init__(self, message: str, *, outputs: Mapping[str, JSONValue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.outputs: Mapping[str, JSONValue] = dict(outputs or {})

    def __str__(self) -> str:
        return self.message


@attrs.frozen
class ProgressEvent:
    """A structured progress update from a step (a build vertex, a layer pull, an upload).

    ``kind`` names the event (``vertex``, ``pull``, ``upload``, ...); ``id`` identifies the thing
    it is about so that renderers can update one line in place; ``data`` holds the details
    (``name``, ``state``, ``current``, ``total``, ``cached``, ...).
    """

    kind: str
    id: str
    data: Mapping[str, JSONValue] = attrs.field(factory=dict)


class LogSink(Protocol):
    """Receives streamed output: ``stream`` is ``"stdout"`` or ``"stderr"``, ``text`` a chunk."""

    def __call__(self, stream: str, text: str) -> None: ...


class ProgressSink(Protocol):
    """Receives :class:`ProgressEvent` objects for the live display and the step log."""

    def __call__(self, event: ProgressEvent) -> None: ...


def _discard_log(stream: str, text: str) -> None:
    return None


def _discard_progress(event: ProgressEvent) -> None:
    return None


@attrs.frozen
class StepContext:
    """Everything one execution of a step may use; nothing global.

    ``config`` is the plugin's attrs config object with every ``${{ ... }}`` reference already
    resolved. ``outputs`` maps earlier step names to their outputs. ``base_dir`` is the workflow
    file's directory (relative config paths resolve against it); ``workspace`` is the run's
    scratch directory, shared by all steps of the run. ``timeout`` is the step's ``timeout:`` in
    seconds (None when unbounded): the engine enforces it by cancelling the body, but an
    executor that can stop its work more gracefully first (a container's stop signal and grace
    period) may use it as its own, shorter-or-equal deadline.
    """

    run_id: str
    workflow_id: str
    step_name: str
    attempt: int
    config: Any
    inputs: Mapping[str, JSONValue]
    outputs: Mapping[str, Mapping[str, JSONValue]]
    workspace: Path
    base_dir: Path
    log_sink: LogSink = attrs.field(default=_discard_log, repr=False)
    progress_sink: ProgressSink = attrs.field(default=_discard_progress, repr=False)
    timeout: float | None = None

    def log(self, stream: str, text: str) -> None:
        """Stream a chunk of output into the step log (and the live display)."""
        self.log_sink(stream, text)

    def progress(self, event: ProgressEvent) -> None:
        """Report structured progress to the live display."""
        self.progress_sink(event)

    def resolve_path(self, path: str | Path) -> Path:
        """Resolve a config path the way the whole project does: relative to ``base_dir``."""
        return resolve_config_path(self.base_dir, path)


class StepBody(abc.ABC):
    """The work of one step. A fresh body is created per step execution.

    Implement ``async def run(self, ctx)``; a plain ``def run(self, ctx)`` is accepted too and
    runs in a worker thread. Cancellation is asyncio cancellation (timeout, Ctrl-C, a failed
    sibling): an async body must clean up whatever it created before letting
    ``CancelledError`` propagate.
    """

    @abc.abstractmethod
    def run(self, ctx: StepContext) -> ExecutionResult | Awaitable[ExecutionResult]:
        """Execute the step; raise :class:`StepFailed` to fail it with a clean message."""


@attrs.frozen
class ExecutorPlugin:
    """What an executor distribution registers under the ``wfe.executors`` entry point group.

    The entry point's name is the step ``type``; ``name`` must match it. ``config_type`` is an
    attrs class the core structures the step's ``config:`` mapping into, with ``converter`` if
    given (for custom hooks), else a default cattrs converter that forbids unknown keys.
    """

    name: str
    config_type: type[Any]
    create: Callable[[Any], StepBody]
    validators: Sequence[Validator] = ()
    description: str = ""
    converter: cattrs.Converter | None = attrs.field(default=None, repr=False)


__all__ = [
    "ConfigPath",
    "Diagnostic",
    "ExecutionResult",
    "ExecutorPlugin",
    "JSONValue",
    "LogSink",
    "ProgressEvent",
    "ProgressSink",
    "Severity",
    "StepBody",
    "StepContext",
    "StepFailed",
    "ValidationContext",
    "Validator",
    "has_reference",
    "resolve_config_path",
    "workflow_base_dir",
]
