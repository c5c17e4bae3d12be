"""What a run produced: a :class:`StepResult` per declared step and the :class:`RunResult`.

These are plain frozen values so that the CLI can render them, serialise them with
:func:`run_result_to_json` for ``wfe run --json``, and tests can compare them, without any of them
holding a reference back into the running engine.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from wfe_core.contracts import JSONValue


class StepState(enum.StrEnum):
    """The final state of a step.

    ``not_run`` is for steps the run never reached (an earlier step failed, the run was
    interrupted) and for hooks that were not triggered (``on_failure`` of a step that succeeded);
    ``skipped`` is only for steps whose ``when`` was false or that depend on a skipped step.
    """

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    NOT_RUN = "not_run"

    @property
    def is_failure(self) -> bool:
        """Failed or timed out: what ``continue_on_error`` and ``on_failure`` react to."""
        return self in (StepState.FAILED, StepState.TIMED_OUT)


class RunStatus(enum.StrEnum):
    """How the whole run ended; maps to the CLI's exit code 0, 1 or 130."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@attrs.frozen
class StepResult:
    """The outcome of one step. Times are seconds since the epoch; ``duration`` is measured with a
    monotonic clock. ``role`` is ``step``, ``parallel``, ``on_failure`` or ``ensure``; ``parent``
    names the step a child or hook belongs to."""

    name: str
    state: StepState
    type: str | None = None
    role: str = "step"
    parent: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    outputs: Mapping[str, JSONValue] = attrs.field(factory=dict)
    outcome: str | None = None
    error: str | None = None
    reason: str | None = None


@attrs.frozen
class RunResult:
    """The outcome of a run: its status and every declared step, in declaration order."""

    run_id: str
    workflow_id: str
    status: RunStatus
    started_at: float
    finished_at: float
    duration: float
    steps: tuple[StepResult, ...]
    workspace: Path | None = None
    error: str | None = None

    def step(self, name: str) -> StepResult:
        """The result of the step called ``name`` (KeyError if there is none)."""
        for result in self.steps:
            if result.name == name:
                return result
        raise KeyError(name)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCEEDED


def step_result_to_json(result: StepResult) -> dict[str, Any]:
    """One step as a JSON-ready dict (every field, ``state`` as its string value)."""
    return {
        "name": result.name,
        "type": result.type,
        "role": result.role,
        "parent": result.parent,
        "state": result.state.value,
        "attempts": result.attempts,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "duration": result.duration,
        "outputs": dict(result.outputs),
        "outcome": result.outcome,
        "error": result.error,
        "reason": result.reason,
    }


def run_result_to_json(result: RunResult) -> dict[str, Any]:
    """The ``wfe run --json`` object: the run's status and timings, and every step."""
    return {
        "run_id": result.run_id,
        "workflow": result.workflow_id,
        "status": result.status.value,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "duration": result.duration,
        "workspace": str(result.workspace) if result.workspace is not None else None,
        "error": result.error,
        "steps": {step.name: step_result_to_json(step) for step in result.steps},
    }


__all__ = [
    "RunResult",
    "RunStatus",
    "StepResult",
    "StepState",
    "run_result_to_json",
    "step_result_to_json",
]
