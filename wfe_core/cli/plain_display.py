"""Progress as plain, timestamped lines: what CI logs and pipes get.

One line per event, flushed at once, never rewritten::

    2026-11-23T04:20:00.123Z hello: started
    2026-11-23T04:20:00.125Z hello | Hello, world        (stdout)
    2026-11-23T04:20:00.126Z hello ! a warning           (stderr)
    2026-11-23T04:20:00.130Z hello: succeeded in 7ms

Progress items (build vertices, pulls) get a line when they finish, not on every update, so
logs stay readable.
"""

from __future__ import annotations

import time
from typing import TextIO

from wfe_core.cli.line_buffer import LineBuffer
from wfe_core.cli.progress_state import RunView, StepView, format_duration
from wfe_core.model import Workflow
from wfe_core.runner import (
    RunEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    StepLog,
    StepProgress,
    StepRetrying,
    StepStarted,
)
from wfe_core.runner.results import RunResult, RunStatus


def timestamp(now: float | None = None) -> str:
    """UTC, ISO 8601, milliseconds: ``2026-11-23T04:20:00.123Z``."""
    now = time.time() if now is None else now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def describe_end(step: StepView) -> str:
    """``succeeded in 1.2s``, ``failed after 3s: <error>``, ``skipped (<reason>)``."""
    took = format_duration(step.duration)
    state = step.state.replace("_", " ")
    if step.state == "succeeded":
        text = f"succeeded in {took}"
    elif step.state in ("skipped", "not_run"):
        text = state
    else:
        text = f"{state} after {took}" if took else state
    if step.attempt > 1:
        text += f" ({step.attempt} attempts)"
    if step.error:
        text += f": {step.error}"
    elif step.reason and step.state != "cancelled":
        text += f" ({step.reason})"
    return text


def quiet_skip(step: StepView, view: RunView) -> bool:
    """Skips not worth a line: an ``on_failure`` hook of a step that did not fail, and what a
    skipped step contains or hooks (its own line says it)."""
    if step.state != "skipped":
        return False
    parent = view.steps.get(step.parent) if step.parent is not None else None
    return step.role == "on_failure" or (parent is not None and parent.state == "skipped")


def describe_run(result: RunResult) -> str:
    took = format_duration(result.duration)
    if result.status is RunStatus.SUCCEEDED:
        return f"run succeeded in {took}"
    if result.status is RunStatus.CANCELLED:
        return f"run interrupted after {took}"
    return f"run failed after {took}: {result.error}" if result.error else f"run failed ({took})"


class PlainDisplay:
    """Writes one timestamped line per event to ``stream``."""

    def __init__(self, workflow: Workflow, stream: TextIO) -> None:
        self.view = RunView.of(workflow)
        self.stream = stream
        self.lines = LineBuffer()
        self.closed = False

    def write(self, text: str) -> None:
        if self.closed:
            return
        stamp = timestamp()
        try:
            for line in text.split("\n"):
                self.stream.write(f"{stamp} {line}\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            # The reader went away (``wfe run | head``): keep running, stop printing.
            self.closed = True

    def write_output(self, step: str, stream: str, line: str) -> None:
        """A line of a step's output: ``step | line`` for stdout, ``step ! line`` for stderr."""
        self.write(f"{step} {'|' if stream == 'stdout' else '!'} {line}")

    def note(self, message: str) -> None:
        self.write(message)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    async def animate(self) -> None:
        return None

    def handle(self, event: RunEvent) -> None:
        if isinstance(event, StepLog):
            for line in self.lines.feed(event.step, event.stream, event.text):
                self.write_output(event.step, event.stream, line)
            return
        step = self.view.apply(event)
        if isinstance(event, RunStarted):
            self.write(
                f"run {event.run_id}: workflow {event.workflow_id!r}, workspace {event.workspace}"
            )
        elif isinstance(event, StepStarted) and step is not None:
            if step.type is None:
                self.write(f"{step.name}: started ({len(self._children(step))} steps in parallel)")
            else:
                again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
                self.write(f"{step.name}: started{again}")
        elif isinstance(event, StepRetrying):
            self.write(
                f"{event.step}: attempt {event.attempt} failed ({event.error.splitlines()[0]}); "
                f"retrying in {format_duration(event.delay) or '0ms'}"
            )
        elif isinstance(event, StepProgress) and step is not None:
            item = step.items[event.event.id]
            if item.done and not item.reported and not step.is_nested(item):
                item.reported = True
                if item.cached:
                    mark = "CACHED"
                elif item.error:
                    mark = f"ERROR {item.error}"
                else:
                    mark = "done"
                self.write(f"{step.name}: [{item.kind}] {item.name} {mark}".rstrip())
        elif isinstance(event, StepFinished) and step is not None:
            for stream, line in self.lines.flush(step.name):
                self.write_output(step.name, stream, line)
            if not quiet_skip(step, self.view):
                self.write(f"{step.name}: {describe_end(step)}")
        elif isinstance(event, RunFinished):
            self.write(describe_run(event.result))

    def _children(self, step: StepView) -> list[StepView]:
        return [
            s for s in self.view.steps.values() if s.parent == step.name and s.role == "parallel"
        ]


__all__ = ["PlainDisplay", "describe_end", "describe_run", "quiet_skip", "timestamp"]
