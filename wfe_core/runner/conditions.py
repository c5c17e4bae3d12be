"""Evaluating ``when`` conditions against what a run knows when a step is about to start.

Field paths are dot-separated and rooted at ``inputs``, ``steps`` or ``env`` (a leading dot is
tolerated); numeric segments index lists. A field that does not exist (a step that produced no
such output, a skipped step) makes a comparison false rather than an error, as in the reference
engine, except for ``is_null`` which is then true. Values written by processes are strings, so
comparing ``"0"`` with ``0`` or ``"true"`` with ``true`` coerces the string to the other side's
type; ``gt``/``gte``/``lt``/``lte`` need numbers on both sides after that, and anything else is a
:class:`ConditionError` that fails the step (a silent false would hide the typo).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wfe_core.model import Combine, Compare, Condition, Not


class ConditionError(Exception):
    """A ``when`` condition could not be evaluated (for example ``gt`` on a non-number)."""


_MISSING = object()

Resolver = Callable[[str], Any]
"""Looks a field path up; returns the value or :data:`MISSING`."""

MISSING: Any = _MISSING


def walk(value: Any, segments: Sequence[str]) -> Any:
    """Follow ``segments`` into nested mappings and lists; :data:`MISSING` when absent."""
    for segment in segments:
        if isinstance(value, Mapping):
            if segment not in value:
                return MISSING
            value = value[segment]
        elif isinstance(value, list | tuple) and segment.lstrip("-").isdigit():
            index = int(segment)
            if not -len(value) <= index < len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def make_resolver(
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str],
) -> Resolver:
    """A resolver over the run's live state; nothing is copied, so it is cheap per step."""

    def resolve(path: str) -> Any:
        segments = path.strip().lstrip(".").split(".")
        root, rest = segments[0], segments[1:]
        if root == "inputs":
            return walk(inputs, rest)
        if root == "env":
            return walk(env, rest)
        if root == "steps" and len(rest) >= 2 and rest[1] == "outputs":
            step_outputs = outputs.get(rest[0], MISSING)
            return MISSING if step_outputs is MISSING else walk(step_outputs, rest[2:])
        return MISSING

    return resolve


def _coerce(value: Any, like: Any) -> Any:
    """Turn a string into the type of ``like`` (bool, int, float, None) when it spells one."""
    if not isinstance(value, str) or isinstance(like, str):
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    if isinstance(like, bool):
        return parsed if isinstance(parsed, bool) else value
    if isinstance(like, int | float):
        ok = isinstance(parsed, int | float) and not isinstance(parsed, bool)
        return parsed if ok else value
    if like is None:
        return parsed if parsed is None else value
    return value


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and not isinstance(right, str):
        left = _coerce(left, right)
    elif isinstance(right, str) and not isinstance(left, str):
        right = _coerce(right, left)
    if isinstance(left, bool) != isinstance(right, bool):
        return False  # 1 == True in Python, but not in a workflow condition
    return bool(left == right)


def _number(value: Any, op: str, field: str) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConditionError(f"'{op}' on {field} needs a number, got {value!r}")
    return float(value)


def _compare(cond: Compare, resolve: Resolver) -> bool:
    value = resolve(cond.field)
    op = cond.op
    if op == "is_null":
        return value is MISSING or value is None
    if op == "is_not_null":
        return value is not MISSING and value is not None
    if value is MISSING:
        return False
    if op == "equals":
        return _equal(value, cond.value)
    if op == "not_equals":
        return not _equal(value, cond.value)
    if op == "contains":
        if isinstance(value, str):
            return str(cond.value) in value
        if isinstance(value, list | tuple):
            return any(_equal(item, cond.value) for item in value)
        if isinstance(value, Mapping):
            return str(cond.value) in value
        raise ConditionError(f"'contains' on {cond.field} needs a string or a list, got {value!r}")
    left = _number(value, op, cond.field)
    right = _number(cond.value, op, "the compared value")
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    if op == "lt":
        return left < right
    if op == "lte":
        return left <= right
    raise ConditionError(f"unknown comparison {op!r}")


def evaluate(condition: Condition, resolve: Resolver) -> bool:
    """Evaluate ``condition``; raises :class:`ConditionError` for type errors."""
    if isinstance(condition, Compare):
        return _compare(condition, resolve)
    if isinstance(condition, Not):
        return not evaluate(condition.condition, resolve)
    if isinstance(condition, Combine):
        if condition.op == "all":
            return all(evaluate(c, resolve) for c in condition.conditions)
        if condition.op == "any":
            return any(evaluate(c, resolve) for c in condition.conditions)
        if condition.op == "none":
            return not any(evaluate(c, resolve) for c in condition.conditions)
        if condition.op == "one_of":
            return sum(evaluate(c, resolve) for c in condition.conditions) == 1
        raise ConditionError(f"unknown combinator {condition.op!r}")
    raise ConditionError(f"not a condition: {condition!r}")


__all__ = ["MISSING", "ConditionError", "Resolver", "evaluate", "make_resolver", "walk"]
