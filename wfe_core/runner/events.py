"""Events a run emits for displays: a step started, logged, reported progress, retried, finished.

The engine calls one callback (``on_event``) with these values, always on the event loop's thread
(chunks logged by sync bodies from worker threads are handed over to the loop first), so a
display never needs locks. Callbacks must be quick and must not raise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

import attrs

from wfe_core.contracts import ProgressEvent
from wfe_core.runner.results import RunResult, StepResult


@attrs.frozen
class RunStarted:
    run_id: str
    workflow_id: str
    workspace: Path
    time: float


@attrs.frozen
class StepStarted:
    """An attempt of a step (or a parallel block, attempt 1) began."""

    step: str
    attempt: int
    time: float


@attrs.frozen
class StepLog:
    """A chunk of a step's stdout or stderr."""

    step: str
    stream: str
    text: str


@attrs.frozen
class StepProgress:
    """Structured progress (build vertices, pulls, uploads) of a step."""

    step: str
    event: ProgressEvent


@attrs.frozen
class StepRetrying:
    """Attempt ``attempt`` failed with ``error``; the next one starts after ``delay`` seconds."""

    step: str
    attempt: int
    delay: float
    error: str


@attrs.frozen
class StepFinished:
    """A step reached its final state (including skipped and cancelled)."""

    result: StepResult

    @property
    def step(self) -> str:
        return self.result.name


@attrs.frozen
class RunFinished:
    result: RunResult


RunEvent: TypeAlias = (
    "RunStarted | StepStarted | StepLog | StepProgress | StepRetrying | StepFinished | RunFinished"
)
EventCallback: TypeAlias = Callable[[RunEvent], None]

__all__ = [
    "EventCallback",
    "RunEvent",
    "RunFinished",
    "RunStarted",
    "StepFinished",
    "StepLog",
    "StepProgress",
    "StepRetrying",
    "StepStarted",
]
