"""Lines the harness wants printed in pytest's terminal summary (startup times and the like).

Timings are measured and shown, never asserted; the conftest prints them at the end.
"""

from __future__ import annotations

NOTES: list[str] = []


def note(line: str) -> None:
    """Queue ``line`` for the ``wfe harness`` section of the terminal summary."""
    NOTES.append(line)
