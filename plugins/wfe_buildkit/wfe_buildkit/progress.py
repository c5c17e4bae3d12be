"""Turning the Status stream into progress events and a plain, buildctl-like build log.

Status messages are deltas: the same vertex arrives many times, may complete more than once
(``FROM`` does) and its logs may arrive before or after it completes. :class:`ProgressTracker`
merges them, numbers vertices in first-seen order (``#1``, ``#2``...) and reports transitions
only. It also keeps the last lines of each vertex's output, which a failed build shows, and
each vertex's inputs, so that a failure in a multi-platform build can be attributed to its target
platform (BuildKit names only some vertices ``[linux/arm64 1/2] ...``; a ``RUN`` in a ``FROM
scratch`` stage, for one, carries no platform in its name, but its inputs do). Warnings
(newer BuildKit, e.g. ``InvalidBaseImagePlatform``; Docker 20.10 sends none) become
:class:`WarningEvent`.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from typing import Any

import attrs

LOG_TAIL = 20
MAX_LINE = 4096


@attrs.frozen
class VertexEvent:
    """A vertex changed state: started, completed, cached, failed or canceled."""

    digest: str
    number: int
    name: str
    state: str
    error: str = ""
    duration: float | None = None


@attrs.frozen
class LogEvent:
    """One complete output line of a vertex (``stream`` is ``stdout`` or ``stderr``)."""

    digest: str
    number: int
    stream: str
    line: str


@attrs.frozen
class TransferEvent:
    """A vertex sub-task progressed (``transferring context: 12 MB``, a layer extraction)."""

    digest: str
    number: int
    id: str
    current: int
    total: int
    completed: bool


@attrs.frozen
class WarningEvent:
    """A build warning (``InvalidBaseImagePlatform: Base image ... was pulled with platform
    "linux/amd64", expected "linux/arm64" ...``); older daemons (Docker 20.10's) send none."""

    digest: str
    number: int
    message: str
    detail: str = ""


StatusEvent = VertexEvent | LogEvent | TransferEvent | WarningEvent

#: ``[linux/arm64 1/2] RUN ...``, ``[linux/arm64/v8 internal] load metadata ...``,
#: ``[linux/amd64 builder 2/3] ...``: BuildKit's platform prefix of vertex names.
_PLATFORM_PREFIX = re.compile(r"^\[([a-z][a-z0-9]*/[a-z0-9_]+(?:/[a-z0-9]+)?)[ \]]")


def vertex_platform(name: str) -> str | None:
    """The target platform in a vertex name's ``[os/arch ...]`` prefix, if it has one."""
    match = _PLATFORM_PREFIX.match(name)
    return match.group(1) if match else None


@attrs.define
class _Vertex:
    digest: str
    number: int
    name: str = ""
    started: float | None = None
    completed: float | None = None
    cached: bool = False
    error: str = ""
    tail: collections.deque[str] = attrs.field(factory=lambda: collections.deque(maxlen=LOG_TAIL))
    partial: dict[int, str] = attrs.field(factory=dict)
    announced: bool = False
    inputs: tuple[str, ...] = ()


def _seconds(ts: Any) -> float | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return float(ts.seconds) + float(ts.nanos) / 1e9


class ProgressTracker:
    """Consumes ``StatusResponse`` messages and calls ``emit`` with :data:`StatusEvent` objects."""

    def __init__(self, emit: Callable[[StatusEvent], None] | None = None) -> None:
        self.emit = emit or (lambda _event: None)
        self.vertices: dict[str, _Vertex] = {}
        self.warnings: list[str] = []

    def _vertex(self, digest: str) -> _Vertex:
        vertex = self.vertices.get(digest)
        if vertex is None:
            vertex = _Vertex(digest, len(self.vertices) + 1)
            self.vertices[digest] = vertex
        return vertex

    def feed(self, response: Any) -> None:
        """Merge one ``StatusResponse``."""
        for v in response.vertexes:
            vertex = self._vertex(v.digest)
            if v.name:
                vertex.name = v.name
            if v.inputs:
                vertex.inputs = tuple(v.inputs)
            started = _seconds(v.started) if v.HasField("started") else None
            completed = _seconds(v.completed) if v.HasField("completed") else None
            if started is not None and vertex.started is None:
                vertex.started = started
                vertex.announced = True
                self.emit(VertexEvent(v.digest, vertex.number, vertex.name, "started"))
            if v.cached and not vertex.cached:
                vertex.cached = True
                if not vertex.announced:
                    vertex.announced = True
                self.emit(VertexEvent(v.digest, vertex.number, vertex.name, "cached"))
            if v.error and v.error != vertex.error:
                vertex.error = v.error
                state = "canceled" if v.error.endswith("context canceled") else "failed"
                self.emit(VertexEvent(v.digest, vertex.number, vertex.name, state, v.error))
            elif completed is not None and completed != vertex.completed:
                vertex.completed = completed
                if not vertex.cached:
                    duration = None
                    if vertex.started is not None:
                        duration = max(0.0, completed - vertex.started)
                    self.emit(
                        VertexEvent(
                            v.digest, vertex.number, vertex.name, "completed", duration=duration
                        )
                    )
        for s in response.statuses:
            vertex = self._vertex(s.vertex)
            self.emit(
                TransferEvent(
                    s.vertex, vertex.number, s.ID, int(s.current), int(s.total),
                    s.HasField("completed"),
                )
            )
        for log in response.logs:
            vertex = self._vertex(log.vertex)
            stream = int(log.stream)
            text = vertex.partial.pop(stream, "") + log.msg.decode("utf-8", "replace")
            *lines, rest = text.split("\n")
            if len(rest) > MAX_LINE:
                lines.append(rest)
                rest = ""
            if rest:
                vertex.partial[stream] = rest
            for line in lines:
                self._line(vertex, stream, line)
        for w in getattr(response, "warnings", ()):
            number = self._vertex(w.vertex).number if w.vertex else 0
            self.warnings.append(w.short.decode("utf-8", "replace"))
            self.emit(
                WarningEvent(
                    w.vertex,
                    number,
                    w.short.decode("utf-8", "replace"),
                    "\n".join(d.decode("utf-8", "replace") for d in w.detail),
                )
            )

    def _line(self, vertex: _Vertex, stream: int, line: str) -> None:
        line = line.rstrip("\r")
        vertex.tail.append(line)
        name = "stderr" if stream == 2 else "stdout"
        self.emit(LogEvent(vertex.digest, vertex.number, name, line))

    def flush(self) -> None:
        """Emit partial lines still buffered (at the end of the stream)."""
        for vertex in self.vertices.values():
            for stream, rest in sorted(vertex.partial.items()):
                if rest:
                    self._line(vertex, stream, rest)
            vertex.partial.clear()

    def failed_vertex(self) -> _Vertex | None:
        """The vertex that failed (not merely cancelled), if any; else the last errored one."""
        failed = [v for v in self.vertices.values() if v.error]
        real = [v for v in failed if not v.error.endswith("context canceled")]
        if real:
            return real[0]
        return failed[-1] if failed else None

    def platform_of(self, digest: str) -> str | None:
        """The target platform a vertex was built for: from its own name's ``[os/arch ...]``
        prefix, else from its nearest ancestor's (breadth first through ``inputs``)."""
        seen = {digest}
        queue = collections.deque([digest])
        while queue:
            vertex = self.vertices.get(queue.popleft())
            if vertex is None:
                continue
            platform = vertex_platform(vertex.name)
            if platform:
                return platform
            for parent in vertex.inputs:
                if parent not in seen:
                    seen.add(parent)
                    queue.append(parent)
        return None


def render_plain(event: StatusEvent) -> tuple[str, str] | None:
    """A buildctl ``--progress=plain`` style line and its stream, or None for noise."""
    if isinstance(event, VertexEvent):
        n = f"#{event.number}"
        if event.state == "started":
            return "stderr", f"{n} {event.name}"
        if event.state == "cached":
            return "stderr", f"{n} CACHED"
        if event.state == "completed":
            secs = f" {event.duration:.1f}s" if event.duration is not None else ""
            return "stderr", f"{n} DONE{secs}"
        if event.state == "canceled":
            return "stderr", f"{n} CANCELED"
        return "stderr", f"{n} ERROR: {event.error}"
    if isinstance(event, LogEvent):
        return event.stream, f"#{event.number} {event.line}"
    if isinstance(event, WarningEvent):
        prefix = f"#{event.number} " if event.number else ""
        return "stderr", f"{prefix}WARNING: {event.message}"
    if event.completed and event.id:
        size = f" {_bytes(event.current)}" if event.current else ""
        return "stderr", f"#{event.number} {event.id}{size} done"
    return None


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.2f}{unit}"
        value /= 1000
    return f"{n}B"


__all__ = [
    "LogEvent",
    "ProgressTracker",
    "StatusEvent",
    "TransferEvent",
    "VertexEvent",
    "WarningEvent",
    "render_plain",
    "vertex_platform",
]
