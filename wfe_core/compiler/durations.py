"""Duration values: ``500ms``, ``30s``, ``10m``, ``2h``, combinations such as ``1m30s``, or a
bare number of seconds (``90``, ``1.5``, or the string ``"90"``)."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+\Z")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")

MAX_SECONDS = 366 * 24 * 3600.0
"""Nothing in a workflow legitimately waits longer than a year; larger values are typos."""


class DurationError(ValueError):
    """The value is not a duration; the message says why, for a diagnostic."""


def parse_duration(value: object) -> float:
    """Seconds denoted by ``value``; raises :class:`DurationError` for anything else."""
    if isinstance(value, bool) or value is None:
        raise DurationError(f"expected a duration such as 30s, got {str(value).lower()}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise DurationError(f"duration {value!r} is negative")
        if _NUMBER.match(text):
            seconds = float(text)
        elif _WHOLE.match(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise DurationError(
                f"invalid duration {value!r}: use a number with a unit ms, s, m or h "
                "(500ms, 30s, 10m, 2h, 1m30s) or a bare number of seconds"
            )
    else:
        raise DurationError(f"expected a duration such as 30s, got {type(value).__name__}")
    if math.isnan(seconds) or seconds < 0:
        raise DurationError(f"duration {value!r} is negative or not a number")
    if seconds > MAX_SECONDS:
        raise DurationError(f"duration {value!r} is longer than a year")
    return seconds


__all__ = ["MAX_SECONDS", "DurationError", "parse_duration"]
