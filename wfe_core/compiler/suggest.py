""" "Did you mean" hints for misspelt keys, types, inputs and step names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the closest candidate, or None when nothing is close enough."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean {matches[0]!r}?" if matches else None


def listing(names: Iterable[str], limit: int = 10) -> str:
    """``a, b, c`` (sorted), cut after ``limit`` names so messages stay short."""
    items = sorted(names)
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def one_of(candidates: Iterable[str]) -> str:
    """``'a', 'b' or 'c'`` for messages listing the allowed values."""
    items = [repr(c) for c in candidates]
    if not items:
        return "(none)"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


__all__ = ["did_you_mean", "listing", "one_of"]
