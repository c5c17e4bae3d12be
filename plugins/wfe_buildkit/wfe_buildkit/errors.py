"""The client's error hierarchy.

Everything the client raises on purpose derives from :class:`BuildkitError`, so callers can
catch one type. Each message says what failed, where (the daemon address, the path, the
Dockerfile line) and what to check; none of them ever contains credentials or secret values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


class BuildkitError(Exception):
    """Base class of every error raised by :mod:`wfe_buildkit`."""


class DaemonConnectionError(BuildkitError):
    """The daemon could not be reached (or did not answer like BuildKit)."""

    def __init__(self, address: str, reason: str, hint: str = "") -> None:
        self.address = address
        self.reason = reason
        self.hint = hint
        text = f"cannot reach BuildKit at {address}: {reason}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class InvalidRequest(BuildkitError):
    """The build request itself is wrong (missing context dir, bad pattern, unknown exporter)."""


#: Where a problem is in the step config (``("secrets", 2)``) and its message.
ConfigProblem = tuple[tuple[str | int, ...], str]


def locate_problems(messages: list[str], where: str) -> tuple[ConfigProblem, ...]:
    """Pair each message with its config path, read from its ``where[INDEX]`` prefix."""
    out: list[ConfigProblem] = []
    for message in messages:
        match = re.match(rf"^{re.escape(where)}\[(\d+)\]", message)
        out.append(((where, int(match.group(1))) if match else (where,), message))
    return tuple(out)


class InvalidConfig(InvalidRequest):
    """A list option of the step (secrets, ssh, cache entries) is malformed.

    ``problems`` keeps each problem with its config path, so validators can emit one
    diagnostic per offending entry instead of one for the whole key.
    """

    def __init__(self, message: str, problems: tuple[ConfigProblem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (((), message),)


class UnsupportedByDaemon(BuildkitError):
    """The daemon does not have a feature the request needs (e.g. ``image`` on Docker 20.10)."""


class SessionError(BuildkitError):
    """The client-side session (context upload, exports) failed."""


class ExportError(BuildkitError):
    """An export coming back to the client could not be written."""


class PushFailed(BuildkitError):
    """Pushing a tag through Docker Engine's API failed."""


class BuildCancelled(BuildkitError):
    """The build was cancelled (timeout or caller cancellation) and stopped on the daemon."""


class BuildFailed(BuildkitError):
    """The daemon reported a failed build.

    ``vertex`` is the name of the failing step (``[3/3] RUN make``), ``location`` a
    ``Dockerfile:LINE`` string when it could be determined, ``logs`` the failing step's last output
    lines and ``daemon_message`` the daemon's error text, verbatim. ``platform`` is the target
    platform the failing step was built for (``linux/arm64``) when the build had explicit
    platforms: in a multi-platform build the daemon's own message rarely says which one failed.
    """

    def __init__(
        self,
        daemon_message: str,
        *,
        vertex: str | None = None,
        location: str | None = None,
        logs: Sequence[str] = (),
        exit_code: int | None = None,
        syntax_error: bool = False,
        hint: str | None = None,
        platform: str | None = None,
    ) -> None:
        self.daemon_message = daemon_message
        self.platform = platform
        self.vertex = vertex
        self.location = location
        self.logs = tuple(logs)
        self.exit_code = exit_code
        self.syntax_error = syntax_error
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        if self.syntax_error:
            where = f" at {self.location}" if self.location else ""
            return f"Dockerfile syntax error{where}: {self.daemon_message}"
        head = "build failed"
        if self.platform:
            head += f" for {self.platform}"
        if self.vertex:
            head += f" at {self.vertex}"
        if self.location:
            head += f" ({self.location})"
        if self.exit_code is not None:
            head += f": exit code {self.exit_code}"
        lines = [head]
        if self.logs:
            lines.append("last output lines:")
            lines.extend(f"  | {line}" for line in self.logs)
        lines.append(f"daemon: {self.daemon_message}")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


__all__ = [
    "BuildCancelled",
    "BuildFailed",
    "BuildkitError",
    "DaemonConnectionError",
    "ExportError",
    "InvalidRequest",
    "PushFailed",
    "SessionError",
    "UnsupportedByDaemon",
]
