"""What the progress displays know about a run, updated from runner events.

Both the live tree (:mod:`.live_display`) and the plain lines (:mod:`.plain_display`) keep one
:class:`RunView`: the declared steps in tree order with their state, timing and progress items.
It is only touched from the event loop's thread, so it needs no locking.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from wfe_core.contracts import ProgressEvent
from wfe_core.model import Workflow
from wfe_core.runner import (
    RunEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    StepProgress,
    StepRetrying,
    StepStarted,
    iter_steps,
)
from wfe_core.runner.results import RunResult, StepResult

DONE_STATES = frozenset(
    {
        "done",
        "completed",
        "complete",
        "succeeded",
        "cached",
        "exists",
        "unpacked",
        "error",
        "failed",
        "canceled",
        "cancelled",
    }
)
"""Item states after which nothing more happens (BuildKit vertices, containerd pulls, ...)."""

PENDING = "pending"
RUNNING = "running"
RETRYING = "retrying"


@attrs.define
class ItemView:
    """One progress item of a step (a build vertex, a layer pull, an upload)."""

    kind: str
    id: str
    data: dict[str, Any] = attrs.field(factory=dict)
    first_seen: float = 0.0
    reported: bool = False
    """Whether the plain display has written this item's final line already."""

    @property
    def name(self) -> str:
        return str(self.data.get("name") or self.id)

    @property
    def cached(self) -> bool:
        return bool(self.data.get("cached"))

    @property
    def error(self) -> str | None:
        error = self.data.get("error")
        return str(error) if error else None

    @property
    def done(self) -> bool:
        state = str(self.data.get("state", "")).lower()
        return self.cached or bool(self.data.get("completed")) or state in DONE_STATES

    @property
    def parent(self) -> str | None:
        """The item this one belongs to (a BuildKit transfer names its vertex in ``vertex``)."""
        parent = self.data.get("vertex")
        return str(parent) if parent else None

    @property
    def fraction(self) -> float | None:
        current, total = self.data.get("current"), self.data.get("total")
        if isinstance(current, int | float) and isinstance(total, int | float) and total > 0:
            return max(0.0, min(1.0, float(current) / float(total)))
        return None


@attrs.define
class StepView:
    name: str
    type: str | None
    role: str
    parent: str | None
    depth: int
    state: str = PENDING
    attempt: int = 0
    started: float | None = None  # monotonic
    duration: float | None = None
    error: str | None = None
    reason: str | None = None
    retry_note: str | None = None
    items: dict[str, ItemView] = attrs.field(factory=dict)

    @property
    def finished(self) -> bool:
        return self.state not in (PENDING, RUNNING, RETRYING)

    def is_nested(self, item: ItemView) -> bool:
        """Whether ``item`` belongs to another item of this step (a transfer of a vertex)."""
        return item.parent is not None and item.parent in self.items

    def top_level_items(self) -> list[ItemView]:
        """The items that do not belong to another of this step's items, oldest first."""
        return [item for item in self.items.values() if not self.is_nested(item)]

    def elapsed(self, now: float) -> float | None:
        if self.duration is not None:
            return self.duration
        return None if self.started is None else now - self.started


@attrs.define
class RunView:
    """The whole run as the displays see it."""

    workflow: Workflow
    steps: dict[str, StepView] = attrs.field(factory=dict)
    run_id: str = ""
    workspace: str = ""
    started: float | None = None
    result: RunResult | None = None

    @classmethod
    def of(cls, workflow: Workflow) -> RunView:
        view = cls(workflow)
        depth: dict[str | None, int] = {None: -1}
        for step, parent, role in iter_steps(workflow.steps):
            level = depth[parent] + 1
            depth[step.name] = level
            view.steps[step.name] = StepView(step.name, step.type, role, parent, level)
        return view

    def apply(self, event: RunEvent) -> StepView | None:
        """Update from one event; returns the step it concerned, if any."""
        now = time.monotonic()
        if isinstance(event, RunStarted):
            self.run_id, self.workspace, self.started = event.run_id, str(event.workspace), now
            return None
        if isinstance(event, RunFinished):
            self.result = event.result
            for result in event.result.steps:  # steps never reached have no event of their own
                if result.name in self.steps and not self.steps[result.name].finished:
                    self.finish(result)
            return None
        if isinstance(event, StepStarted):
            step = self.steps[event.step]
            if step.started is None:
                step.started = now
            step.state, step.attempt, step.retry_note = RUNNING, event.attempt, None
            return step
        if isinstance(event, StepRetrying):
            step = self.steps[event.step]
            step.state = RETRYING
            step.retry_note = f"attempt {event.attempt} failed: {event.error}"
            return step
        if isinstance(event, StepFinished):
            return self.finish(event.result)
        if isinstance(event, StepProgress):
            step = self.steps[event.step]
            self.add_item(step, event.event, now)
            return step
        return self.steps.get(getattr(event, "step", ""))

    def finish(self, result: StepResult) -> StepView:
        step = self.steps[result.name]
        step.state = result.state.value
        step.duration = result.duration
        step.error, step.reason = result.error, result.reason
        step.attempt = result.attempts
        return step

    @staticmethod
    def add_item(step: StepView, event: ProgressEvent, now: float) -> ItemView:
        item = step.items.get(event.id)
        if item is None:
            item = step.items[event.id] = ItemView(event.kind, event.id, {}, now)
        item.data.update(event.data)
        return item


def format_duration(seconds: float | None) -> str:
    """``0.0123`` → ``12ms``, ``3.4`` → ``3.4s``, ``75`` → ``1m15s``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_bytes(value: float) -> str:
    """``512B``, ``1.5KiB``, ``3.2MiB``, ``1.0GiB`` (GiB is the largest unit)."""
    if value < 1024:
        return f"{value:.0f}B"
    for unit in ("KiB", "MiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f}{unit}"
    return f"{value / 1024:.1f}GiB"


__all__ = [
    "PENDING",
    "RETRYING",
    "RUNNING",
    "ItemView",
    "RunView",
    "StepView",
    "format_bytes",
    "format_duration",
]
