"""Splitting streamed output chunks into whole lines per step and stream, for prefixed display."""

from __future__ import annotations


class LineBuffer:
    """Collects chunks of ``(step, stream)`` and hands back complete lines.

    A partial line is held until its newline arrives or :meth:`flush` is called (when the step
    ends). A line longer than ``max_line`` is cut, so one endless line cannot grow memory.
    """

    def __init__(self, max_line: int = 64 * 1024) -> None:
        self.max_line = max_line
        self._partial: dict[tuple[str, str], str] = {}

    def feed(self, step: str, stream: str, text: str) -> list[str]:
        key = (step, stream)
        data = self._partial.pop(key, "") + text
        lines = data.split("\n")
        rest = lines.pop()
        while len(rest) > self.max_line:
            lines.append(rest[: self.max_line])
            rest = rest[self.max_line :]
        if rest:
            self._partial[key] = rest
        return [line.rstrip("\r") for line in lines]

    def flush(self, step: str) -> list[tuple[str, str]]:
        """The held partial lines of ``step`` as ``(stream, line)`` pairs."""
        out = []
        for stream in ("stdout", "stderr"):
            rest = self._partial.pop((step, stream), None)
            if rest:
                out.append((stream, rest.rstrip("\r")))
        return out


__all__ = ["LineBuffer"]
