"""The position-carrying YAML tree the compiler reads instead of plain Python data.

Every scalar, list, mapping and mapping key remembers where it was written, so any problem found
later (a bad duration, an unknown config key reported by cattrs, a reference to a later step)
can point at the exact line and column. Aliases share the node they name; the loader bounds how
large the tree can become once aliases are expanded.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeAlias

import attrs

ScalarValue: TypeAlias = "str | int | float | bool | None"


@attrs.frozen(slots=True)
class Span:
    """Where a node starts (1-based ``line``/``column``) and its character offsets in the text."""

    line: int
    column: int
    start: int = 0
    end: int = 0


@attrs.frozen(slots=True)
class Scalar:
    """A scalar with its resolved value (YAML 1.2 core schema) and quoting style."""

    value: ScalarValue
    span: Span
    style: str | None = None


@attrs.frozen(slots=True)
class Seq:
    """A YAML sequence."""

    items: tuple[Node, ...]
    span: Span


@attrs.frozen(slots=True)
class Entry:
    """One ``key: value`` pair of a mapping; keys are always strings."""

    key: str
    key_span: Span
    value: Node


@attrs.frozen(slots=True)
class Map:
    """A YAML mapping whose keys are unique strings, in file order."""

    entries: tuple[Entry, ...]
    span: Span
    index: Mapping[str, Entry] = attrs.field(eq=False, repr=False)

    @classmethod
    def of(cls, entries: tuple[Entry, ...], span: Span) -> Map:
        return cls(entries, span, {e.key: e for e in entries})

    def get(self, key: str) -> Entry | None:
        return self.index.get(key)

    def keys(self) -> list[str]:
        return [e.key for e in self.entries]


Node: TypeAlias = "Scalar | Seq | Map"


def kind_of(node: Node) -> str:
    """A short English description of what a node holds, for "expected X, got Y" messages."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    return kind_of_value(node.value)


def kind_of_value(value: object) -> str:
    """Like :func:`kind_of`, for plain values."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def iter_scalars(node: Node) -> Iterator[Scalar]:
    """Every scalar under ``node`` (mapping values and list items, not keys), in file order.

    Iterative, so deep trees cannot exhaust the stack.
    """
    work: list[Node] = [node]
    while work:
        current = work.pop()
        if isinstance(current, Scalar):
            yield current
        elif isinstance(current, Seq):
            work.extend(reversed(current.items))
        else:
            work.extend(e.value for e in reversed(current.entries))


def to_plain(node: Node) -> Any:
    """The node as plain Python data (dicts, lists, scalars) for config structuring.

    Iterative, so deep trees cannot exhaust the stack; aliases are copied, which the loader's
    node cap keeps bounded.
    """
    if isinstance(node, Scalar):
        return node.value
    root: list[Any] = [None]
    work: list[tuple[Node, Any, Any]] = [(node, root, 0)]
    while work:
        current, parent, slot = work.pop()
        if isinstance(current, Scalar):
            parent[slot] = current.value
        elif isinstance(current, Seq):
            items: list[Any] = [None] * len(current.items)
            parent[slot] = items
            work.extend((child, items, i) for i, child in enumerate(current.items))
        else:
            mapping: dict[str, Any] = {}
            parent[slot] = mapping
            for entry in current.entries:
                mapping[entry.key] = None
                work.append((entry.value, mapping, entry.key))
    return root[0]


__all__ = [
    "Entry",
    "Map",
    "Node",
    "Scalar",
    "ScalarValue",
    "Seq",
    "Span",
    "iter_scalars",
    "kind_of",
    "to_plain",
]
