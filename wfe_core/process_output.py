"""Turning what a process printed and wrote into step outputs.

Shared by every process-like executor (``shell`` here, ``containerd`` in its own distribution), so
that both give the same output keys with the same rules:

- ``exit_code``, ``stdout`` and ``stderr`` are always present. ``stdout`` and ``stderr`` hold at
  most :data:`STREAM_CAP_BYTES` (1 MiB) of UTF-8 each: the *tail* is kept, because the end of a
  log is where a failure is explained, and a ``[wfe: N bytes of <stream> truncated]`` line is put
  in front when anything was dropped.
- ``##wfe[output key=value]`` lines on stdout (the reference engine's convention): the line must
  start with the marker and end with ``]``; the key is trimmed, the value is kept raw (it may
  contain ``=`` and ``]``); the last duplicate wins; values stay strings. They are parsed as the
  stream arrives, so they count even when the stdout tail no longer holds them, and chunks that
  split a line are handled.
- ``key=value`` lines appended to the file named by ``$WFE_OUTPUT``: blank lines and ``#``
  comments are ignored, and ``key<<DELIM`` ... ``DELIM`` gives a multi-line value (the GitHub
  Actions heredoc form). This channel is safer than stdout because nothing the process merely
  *prints* (say, an attacker-controlled log line) can forge it, so it wins over ``##wfe`` lines.

Keys must match ``[A-Za-z_][A-Za-z0-9_-]*`` so that ``steps.NAME.outputs.KEY`` can address them;
other lines are ignored. The reserved keys ``exit_code``, ``stdout`` and ``stderr`` cannot be set by
the process: they always tell the truth. Parsed outputs are bounded as well (see
:data:`OUTPUTS_CAP_BYTES` and :data:`OUTPUT_FILE_CAP_BYTES`), so a runaway process cannot exhaust
memory through them.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

from wfe_core.contracts import JSONValue

STREAM_CAP_BYTES = 1024 * 1024
"""How much of each of stdout and stderr is kept (the tail), in bytes of UTF-8: 1 MiB."""

OUTPUTS_CAP_BYTES = 1024 * 1024
"""Total size of the keys and values parsed from ``##wfe[output]`` lines; later new keys are
dropped once it is reached (updates of existing keys still apply when they fit)."""

OUTPUT_FILE_CAP_BYTES = 1024 * 1024
"""How much of the ``$WFE_OUTPUT`` file is read; the rest is ignored."""

RESERVED_KEYS = frozenset({"exit_code", "stdout", "stderr"})
"""Output keys that only the engine sets."""

STREAMS = ("stdout", "stderr")

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_MARKER = "##wfe[output "


def valid_key(key: str) -> bool:
    """Whether ``key`` can be an output key (addressable as ``steps.S.outputs.KEY``)."""
    return bool(_KEY.match(key)) and key not in RESERVED_KEYS


def parse_output_line(line: str) -> tuple[str, str] | None:
    """``##wfe[output key=value]`` → ``(key, value)``; anything else → None."""
    line = line.rstrip("\r\n")
    if not line.startswith(_MARKER) or not line.endswith("]"):
        return None
    body = line[len(_MARKER) : -1]
    key, sep, value = body.partition("=")
    key = key.strip()
    if not sep or not valid_key(key):
        return None
    return key, value


class _Tail:
    """The last ``cap`` bytes of one stream, kept as a deque of chunks (appends are O(1))."""

    __slots__ = ("cap", "chunks", "dropped", "size")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.chunks: collections.deque[tuple[str, int]] = collections.deque()
        self.size = 0
        self.dropped = 0

    def add(self, text: str) -> None:
        size = len(text.encode("utf-8", "surrogateescape"))
        self.chunks.append((text, size))
        self.size += size
        while self.size > self.cap and self.chunks:
            first, first_size = self.chunks[0]
            excess = self.size - self.cap
            if first_size <= excess:
                self.chunks.popleft()
                self.size -= first_size
                self.dropped += first_size
                continue
            # Keep the end of the first chunk; cutting may split a multi-byte character, whose
            # remaining bytes are dropped too (``ignore``), so recount what is kept.
            kept = first.encode("utf-8", "surrogateescape")[excess:].decode("utf-8", "ignore")
            kept_size = len(kept.encode("utf-8", "surrogateescape"))
            self.chunks[0] = (kept, kept_size)
            self.size -= first_size - kept_size
            self.dropped += first_size - kept_size

    def text(self) -> str:
        return "".join(chunk for chunk, _ in self.chunks)


class OutputCapture:
    """Collects a process's stdout and stderr as they stream, within fixed memory.

    Feed it every chunk (``feed("stdout", text)``); read the kept tails with :meth:`text` or
    :meth:`tail`, and the ``##wfe[output]`` lines seen on stdout with :attr:`output_lines`.
    """

    def __init__(self, cap: int = STREAM_CAP_BYTES) -> None:
        self.cap = cap
        self._tails = {name: _Tail(cap) for name in STREAMS}
        self._partial = ""  # stdout text after the last newline, not yet a whole line
        self._outputs: dict[str, str] = {}
        self._outputs_size = 0

    def feed(self, stream: str, text: str) -> None:
        """Add a chunk of ``stream`` ("stdout" or "stderr"); chunks may split lines anywhere."""
        if stream not in self._tails:
            raise ValueError(f"unknown stream {stream!r}; expected 'stdout' or 'stderr'")
        if not text:
            return
        self._tails[stream].add(text)
        if stream == "stdout":
            self._scan(text)

    def _scan(self, text: str) -> None:
        if "\n" not in text:
            self._partial = self._bounded(self._partial + text)
            return
        lines = (self._partial + text).split("\n")
        self._partial = self._bounded(lines.pop())
        for line in lines:
            if line.startswith("##wfe["):
                self._record(line)

    def _bounded(self, partial: str) -> str:
        # A line longer than the cap cannot produce a keepable output; don't hold it forever.
        if len(partial) > self.cap:
            return "\x00"  # poison the line: it no longer starts with the marker
        return partial

    def _growth(self, key: str, value: str) -> int | None:
        """How much setting ``key`` to ``value`` grows the parsed outputs, or None if that would
        pass :data:`OUTPUTS_CAP_BYTES`."""
        old = self._outputs.get(key)
        delta = len(value) + (len(key) if old is None else -len(old))
        return None if self._outputs_size + delta > OUTPUTS_CAP_BYTES else delta

    def _record(self, line: str) -> None:
        parsed = parse_output_line(line)
        if parsed is None:
            return
        delta = self._growth(*parsed)
        if delta is not None:
            self._outputs[parsed[0]] = parsed[1]
            self._outputs_size += delta

    def text(self, stream: str) -> str:
        """The kept tail of ``stream``, preceded by a truncation note if bytes were dropped."""
        tail = self._tails[stream]
        if tail.dropped:
            return f"[wfe: {tail.dropped} bytes of {stream} truncated]\n{tail.text()}"
        return tail.text()

    def truncated(self, stream: str) -> int:
        """How many bytes of ``stream`` were dropped to stay within the cap (0 if none)."""
        return self._tails[stream].dropped

    def tail(self, stream: str, lines: int = 20) -> str:
        """The last ``lines`` lines of the kept ``stream`` (for error messages)."""
        kept = self._tails[stream].text().rstrip("\n").split("\n")
        return "\n".join(kept[-lines:]) if lines > 0 else ""

    @property
    def output_lines(self) -> dict[str, str]:
        """Outputs from ``##wfe[output key=value]`` stdout lines, including an unterminated last
        line (a process may exit without printing the final newline)."""
        result = dict(self._outputs)
        if self._partial.startswith("##wfe["):
            parsed = parse_output_line(self._partial)
            if parsed is not None and self._growth(*parsed) is not None:  # the same cap
                result[parsed[0]] = parsed[1]
        return result


def parse_output_text(text: str) -> dict[str, str]:
    """Parse the contents of a ``$WFE_OUTPUT`` file (see the module docstring for the format)."""
    result: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        eq = line.find("=")
        heredoc = line.find("<<")
        if heredoc > 0 and (eq < 0 or heredoc < eq):
            key, delimiter = line[:heredoc].strip(), line[heredoc + 2 :].strip()
            body: list[str] = []
            while index < len(lines) and lines[index] != delimiter:
                body.append(lines[index])
                index += 1
            terminated = index < len(lines)
            index += 1  # skip the delimiter
            if delimiter and terminated and valid_key(key):
                result[key] = "\n".join(body)
            continue
        if eq <= 0:
            continue
        key, value = line[:eq].strip(), line[eq + 1 :]
        if valid_key(key):
            result[key] = value
    return result


def parse_output_file(path: Path | str | None) -> dict[str, str]:
    """Read the ``$WFE_OUTPUT`` file; a missing file means no outputs.

    At most :data:`OUTPUT_FILE_CAP_BYTES` are read; a line cut by that limit is dropped.
    """
    if path is None:
        return {}
    try:
        with open(path, "rb") as handle:
            data = handle.read(OUTPUT_FILE_CAP_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return {}
    if len(data) > OUTPUT_FILE_CAP_BYTES:
        data = data[:OUTPUT_FILE_CAP_BYTES]
        data = data[: data.rfind(b"\n") + 1]
    return parse_output_text(data.decode("utf-8", "replace"))


def process_outputs(
    capture: OutputCapture, exit_code: int | None, output_file: Path | str | None = None
) -> dict[str, JSONValue]:
    """The outputs of a finished process: ``exit_code``, ``stdout``, ``stderr``, then the
    ``##wfe[output]`` lines, then the ``$WFE_OUTPUT`` file (which wins over the lines).

    ``exit_code`` is None when no exit status exists (the process could not be started).
    """
    outputs: dict[str, JSONValue] = {
        "exit_code": exit_code,
        "stdout": capture.text("stdout"),
        "stderr": capture.text("stderr"),
    }
    outputs.update(capture.output_lines)
    outputs.update(parse_output_file(output_file))
    return outputs


__all__ = [
    "OUTPUTS_CAP_BYTES",
    "OUTPUT_FILE_CAP_BYTES",
    "RESERVED_KEYS",
    "STREAM_CAP_BYTES",
    "OutputCapture",
    "parse_output_file",
    "parse_output_line",
    "parse_output_text",
    "process_outputs",
    "valid_key",
]
