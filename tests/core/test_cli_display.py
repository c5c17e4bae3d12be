"""The progress displays fed with runner events directly: vertices, progress bars, prefixes."""

from __future__ import annotations

import io
import re

from rich.console import Console

from wfe_core.cli.live_display import LiveDisplay
from wfe_core.cli.plain_display import PlainDisplay
from wfe_core.contracts import ProgressEvent
from wfe_core.model import Location, Step, Workflow
from wfe_core.runner import (
    RunStarted,
    StepFinished,
    StepLog,
    StepProgress,
    StepRetrying,
    StepStarted,
)
from wfe_core.runner.results import StepResult, StepState

LOC = Location("t.yaml", 1, 1)
WORKFLOW = Workflow(
    "demo",
    LOC,
    (
        Step("build", LOC, type="buildkit"),
        Step("checks", LOC, parallel=(Step("lint", LOC, type="shell"),)),
    ),
)


def feed(display: LiveDisplay | PlainDisplay) -> None:
    from pathlib import Path

    display.handle(RunStarted("run-1", "demo", Path("/tmp/ws"), 0.0))
    display.handle(StepStarted("build", 1, 0.0))
    display.handle(
        StepProgress(
            "build", ProgressEvent("vertex", "v1", {"name": "[1/3] FROM busybox", "cached": True})
        )
    )
    display.handle(
        StepProgress(
            "build",
            ProgressEvent("vertex", "v2", {"name": "[2/3] COPY . /app", "state": "running"}),
        )
    )
    display.handle(
        StepProgress(
            "build",
            ProgressEvent(
                "upload", "ctx", {"name": "context", "current": 512 * 1024, "total": 1024 * 1024}
            ),
        )
    )
    display.handle(StepLog("build", "stdout", "#5 compiling\n#5 do"))
    display.handle(StepLog("build", "stdout", "ne\n"))


def render(display: LiveDisplay) -> str:
    console = Console(file=io.StringIO(), width=100, force_terminal=False, color_system=None)
    console.print(display.render())
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def test_live_tree_shows_vertices_markers_and_bars() -> None:
    stream = io.StringIO()
    display = LiveDisplay(WORKFLOW, stream)
    feed(display)
    text = render(display)
    assert "build (buildkit)" in text
    assert "[1/3] FROM busybox CACHED" in text
    assert "[2/3] COPY . /app" in text
    assert re.search(r"context .*512\.0KiB/1\.0MiB", text), text
    assert "○ checks" in text and "○ lint (shell)" in text
    display.handle(
        StepProgress(
            "build",
            ProgressEvent(
                "vertex_status",
                "v2/sha256:l1",
                {"vertex": "v2", "name": "sha256:l1", "current": 10, "total": 100},
            ),
        )
    )
    text = render(display)
    assert re.search(r"COPY \. /app\n.*sha256:l1 .*10%", text), text
    printed = stream.getvalue()
    assert "build │ #5 compiling" in printed and "build │ #5 done" in printed
    display.handle(StepProgress("build", ProgressEvent("vertex", "v2", {"state": "done"})))
    display.handle(StepFinished(StepResult("build", StepState.SUCCEEDED, "buildkit", duration=2.0)))
    text = render(display)
    assert "✓ build (buildkit)  2.0s" in text
    assert "3 items, 1 cached" in text and "COPY" not in text  # folded once the step is done


def test_plain_lines_for_progress_and_retries() -> None:
    stream = io.StringIO()
    display = PlainDisplay(WORKFLOW, stream)
    feed(display)
    display.handle(StepProgress("build", ProgressEvent("vertex", "v2", {"state": "done"})))
    display.handle(StepRetrying("build", 1, 0.5, "boom\nmore detail"))
    display.handle(
        StepFinished(
            StepResult(
                "build", StepState.FAILED, "buildkit", duration=1.5, attempts=2, error="it broke"
            )
        )
    )
    lines = [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "run run-1: workflow 'demo', workspace /tmp/ws",
        "build: started",
        "build: [vertex] [1/3] FROM busybox CACHED",
        "build | #5 compiling",
        "build | #5 done",
        "build: [vertex] [2/3] COPY . /app done",
        "build: attempt 1 failed (boom); retrying in 500ms",
        "build: failed after 1.5s (2 attempts): it broke",
    ]
