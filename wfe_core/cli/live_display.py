"""Live progress on a terminal with rich: a tree of steps, their progress items, their output.

The tree shows every declared step (parallel children and hooks nested under their step) with a
state icon and elapsed time; progress items a step reports (BuildKit vertices, layer pulls,
context uploads) appear under it with cached/done markers and a bar when they have a
``current``/``total``. Output lines are printed above the tree, prefixed with the step's name.

Rendering happens only on the event loop's thread (``auto_refresh`` is off; :meth:`animate`
refreshes ten times a second), so the view never changes while rich reads it.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from wfe_core.cli.line_buffer import LineBuffer
from wfe_core.cli.plain_display import describe_run, quiet_skip
from wfe_core.cli.progress_state import (
    PENDING,
    RETRYING,
    RUNNING,
    ItemView,
    RunView,
    StepView,
    format_bytes,
    format_duration,
)
from wfe_core.model import Workflow
from wfe_core.runner import RunEvent, RunFinished, RunStatus, StepFinished, StepLog

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ICONS = {
    PENDING: ("○", "dim"),
    "succeeded": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "timed_out": ("⏱", "bold red"),
    "cancelled": ("⊘", "yellow"),
    "skipped": ("↷", "dim"),
    "not_run": ("·", "dim"),
}
PREFIX_COLOURS = ("cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta")
MAX_ITEMS = 8
"""Progress items shown under a running step (the most recent ones)."""
MAX_CHILDREN = 4
"""Active transfers shown under one item."""


def _spinner(now: float) -> str:
    return SPINNER[int(now * 10) % len(SPINNER)]


def _first_line(text: str, limit: int = 120) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


class LiveDisplay:
    """The rich live tree; use :meth:`start`, feed :meth:`handle`, run :meth:`animate`,
    then :meth:`stop`."""

    def __init__(self, workflow: Workflow, stream: TextIO) -> None:
        self.view = RunView.of(workflow)
        self.console = Console(file=stream, highlight=False, soft_wrap=False)
        self.live = Live(
            console=self.console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
            get_renderable=self.render,
        )
        self.lines = LineBuffer()
        self._dirty = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.live.start(refresh=True)

    def stop(self) -> None:
        if self.live.is_started:
            self.live.refresh()
            self.live.stop()
        result = self.view.result
        if result is not None:
            style = (
                "green"
                if result.ok
                else ("yellow" if result.status is RunStatus.CANCELLED else "bold red")
            )
            self.console.print(Text(describe_run(result), style=style))

    async def animate(self) -> None:
        """Refresh for the spinners and clocks until cancelled."""
        while True:
            await asyncio.sleep(0.1)
            if self.live.is_started:
                self.live.refresh()

    def note(self, message: str) -> None:
        self.console.print(Text(message, style="yellow"))

    # -- events -------------------------------------------------------------------------------

    def handle(self, event: RunEvent) -> None:
        if isinstance(event, StepLog):
            for line in self.lines.feed(event.step, event.stream, event.text):
                self._print_line(event.step, event.stream, line)
            return
        step = self.view.apply(event)
        if isinstance(event, StepFinished) and step is not None:
            for stream, line in self.lines.flush(step.name):
                self._print_line(step.name, stream, line)
        if isinstance(event, RunFinished | StepFinished):
            self.live.refresh()

    def _print_line(self, step: str, stream: str, line: str) -> None:
        colour = PREFIX_COLOURS[zlib.crc32(step.encode()) % len(PREFIX_COLOURS)]
        prefix = Text(f"{step} │ ", style=colour)
        body = Text(line, style="red" if stream == "stderr" else "")
        self.console.print(prefix + body, overflow="fold")

    # -- rendering ----------------------------------------------------------------------------

    def render(self) -> RenderableType:
        now = time.monotonic()
        view = self.view
        elapsed = format_duration(now - view.started) if view.started is not None else ""
        title = Text.assemble(
            ("wfe ", "bold"),
            (view.workflow.id, "bold cyan"),
            (f"  run {view.run_id}" if view.run_id else "", "dim"),
            (f"  {elapsed}", "dim"),
        )
        tree = Tree(title, guide_style="dim")
        nodes: dict[str | None, Tree] = {None: tree}
        for step in view.steps.values():
            if step.role in ("on_failure", "ensure") and step.state in (PENDING, "not_run"):
                continue  # hooks appear once they are triggered
            if quiet_skip(step, view):
                continue
            parent = nodes.get(step.parent, tree)
            node = parent.add(self._label(step, now))
            nodes[step.name] = node
            items = step.top_level_items()
            shown = self._shown(step, items)
            for item in shown:
                item_node = node.add(self._item_label(item, now))
                for child in self._children(step, item):
                    item_node.add(self._item_label(child, now))
            summary = self._items_summary(step, items, shown)
            if summary is not None:
                node.add(summary)
        return tree

    def _label(self, step: StepView, now: float) -> RenderableType:
        if step.state in (RUNNING, RETRYING):
            icon, style = _spinner(now), "bold cyan" if step.state == RUNNING else "yellow"
        else:
            icon, style = ICONS.get(step.state, ("?", ""))
        label = Text.assemble((icon + " ", style))
        if step.role in ("on_failure", "ensure"):
            label.append(f"{step.role}: ", style="dim")
        label.append(step.name, style="bold" if step.state in (RUNNING, RETRYING) else "")
        if step.type:
            label.append(f" ({step.type})", style="dim")
        took = step.elapsed(now)
        if took is not None and step.state not in ("skipped", "not_run"):
            label.append(f"  {format_duration(took)}", style="dim")
        if step.attempt > 1:
            label.append(f"  attempt {step.attempt}", style="yellow")
        if step.state in ("failed", "timed_out", "cancelled", "skipped"):
            label.append(f"  {step.state.replace('_', ' ')}", style=style)
        if step.error:
            label.append(f": {_first_line(step.error)}", style="red")
        elif step.retry_note and step.state == RETRYING:
            label.append(f"  {_first_line(step.retry_note)}", style="yellow")
        elif step.reason and step.state == "skipped":
            label.append(f" ({step.reason})", style="dim")
        return label

    @staticmethod
    def _shown(step: StepView, items: list[ItemView]) -> list[ItemView]:
        """Which of the step's top-level ``items`` to show: the latest ones while the step
        runs, the failed ones after."""
        if step.finished:
            return [item for item in items if item.error]
        return items[-MAX_ITEMS:]

    @staticmethod
    def _children(step: StepView, item: ItemView) -> list[ItemView]:
        """Transfers of a running item that are still moving (layers, context upload)."""
        if step.finished or item.done:
            return []
        children = [c for c in step.items.values() if c.parent == item.id and not c.done]
        return children[-MAX_CHILDREN:]

    @staticmethod
    def _items_summary(step: StepView, items: list[ItemView], shown: list[ItemView]) -> Text | None:
        """``… 5 earlier`` while running, ``12 items, 10 cached`` once done (top-level only)."""
        if not items:
            return None
        cached = sum(1 for item in items if item.cached)
        hidden = len(items) - len(shown)
        if not hidden:
            return None
        text = f"{len(items)} items" if step.finished else f"… {hidden} earlier"
        if cached:
            text += f", {cached} cached"
        return Text(text, style="dim")

    def _item_label(self, item: ItemView, now: float) -> RenderableType:
        if item.error:
            mark, style = "✗", "red"
        elif item.cached:
            mark, style = "✓", "blue"
        elif item.done:
            mark, style = "✓", "green"
        else:
            mark, style = _spinner(now), "cyan"
        text = Text.assemble((mark + " ", style), (_first_line(item.name, 80), ""))
        if item.cached:
            text.append(" CACHED", style="blue")
        if item.error:
            text.append(f" {_first_line(item.error, 80)}", style="red")
        fraction = item.fraction
        if fraction is None or item.done:
            return text
        grid = Table.grid(padding=(0, 1))
        grid.add_column()
        grid.add_column(width=24)
        grid.add_column()
        bar = ProgressBar(total=1.0, completed=fraction, width=24)
        grid.add_row(text, bar, Text(self._amount(item.data, fraction), style="dim"))
        return grid

    @staticmethod
    def _amount(data: dict[str, Any], fraction: float) -> str:
        current, total = data.get("current"), data.get("total")
        if isinstance(total, int | float) and total >= 1024 and isinstance(current, int | float):
            return f"{format_bytes(current)}/{format_bytes(total)}"
        return f"{fraction * 100:.0f}%"


__all__ = ["LiveDisplay"]
