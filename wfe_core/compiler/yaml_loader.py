"""Turning workflow file bytes into a :mod:`~wfe_core.compiler.nodes` tree, safely.

PyYAML's composer and constructor recurse once per nesting level and expand aliases eagerly, so
they can be driven into a ``RecursionError`` or an exponential "billion laughs" blow-up. This
module consumes the parser's *event stream* instead (PyYAML's parsers are iterative state
machines) and builds the tree with an explicit stack, checking the caps in
:mod:`~wfe_core.compiler.limits` as it goes: nesting depth before a level is entered, and the
node count with every alias counted as a full copy of what it names.

Scalars are resolved with the YAML 1.2 core schema (``true``/``false`` only, no ``yes``/``no``,
no sexagesimal numbers, no timestamps), as the reference engine's YAML 1.2 parser does. Only the
standard scalar tags are accepted; anything that would construct an object is rejected. Merge
keys (``<<: *anchor``) are honoured, explicit keys winning over merged ones.
"""

from __future__ import annotations

import math
import re
from typing import Any

import attrs
import yaml

from wfe_core.compiler import codes
from wfe_core.compiler.limits import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from wfe_core.compiler.nodes import Entry, Map, Node, Scalar, ScalarValue, Seq, Span
from wfe_core.compiler.report import Reporter

_Parser: Any = getattr(yaml, "CBaseLoader", None) or yaml.BaseLoader

_TAG = "tag:yaml.org,2002:"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUES = frozenset({"true", "True", "TRUE"})
_FALSES = frozenset({"false", "False", "FALSE"})
_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(nan|NaN|NAN)\Z")
_COLLECTION_TAGS = frozenset({_TAG + "map", _TAG + "seq"})


class _Abort(Exception):
    """Stop building: a cap was hit or the parser failed (the diagnostic is already reported)."""


def _too_large(report: Reporter) -> None:
    report.error(
        codes.TOO_LARGE,
        f"file is larger than {MAX_FILE_BYTES} bytes, the limit for workflow files",
        None,
    )


def _position(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` (a column counts bytes when ``text`` is bytes)."""
    newline: Any = b"\n" if isinstance(text, bytes) else "\n"
    line = text.count(newline, 0, offset) + 1
    column = offset - (text.rfind(newline, 0, offset) + 1) + 1
    return line, column


def decode(data: bytes, report: Reporter) -> str | None:
    """The file's text, or None after reporting a size or encoding problem."""
    if len(data) > MAX_FILE_BYTES:
        _too_large(report)
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start
        line, column = _position(data, offset)
        report.error(
            codes.NOT_UTF8,
            f"file is not valid UTF-8: byte 0x{data[offset]:02x} at offset {offset} "
            f"(line {line}, byte {column} of that line)",
            Span(line, column),
            hint="save the file as UTF-8",
        )
        return None


_NEVER_SPECIAL = frozenset("abcdeghijklmopqrsuvwxyzABCDEGHIJKLMOPQRSUVWXYZ_/$\"'")
"""First characters with which a plain scalar can only be a string (fast path)."""


def _resolve_plain(text: str) -> ScalarValue:
    if text[:1] in _NEVER_SPECIAL:
        return text
    if text in _NULLS:
        return None
    if text in _TRUES:
        return True
    if text in _FALSES:
        return False
    try:
        if _INT.match(text):
            return int(text)
        if _OCT.match(text):
            return int(text[2:], 8)
        if _HEX.match(text):
            return int(text[2:], 16)
        if _FLOAT.match(text):
            return float(text)
    except ValueError:  # e.g. more digits than Python converts; keep the text
        return text
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def _resolve_tagged(tag: str, text: str) -> ScalarValue:
    """Value of an explicitly tagged scalar; raises ValueError when it does not fit the tag."""
    name = tag[len(_TAG) :]
    if name == "str":
        return text
    value = _resolve_plain(text)
    if name == "null" and value is None:
        return None
    if name == "bool" and isinstance(value, bool):
        return value
    if name == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if name == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{text!r} is not a valid !!{name}")


def _span(mark: Any, end: Any = None) -> Span:
    return Span(mark.line + 1, mark.column + 1, mark.index, end.index if end else mark.index)


@attrs.define
class _Frame:
    """A mapping or sequence being built (mutable scratch state of the builder)."""

    is_map: bool
    span: Span
    anchor: str | None
    size: int = 1
    height: int = 1
    items: list[Node] = attrs.Factory(list)
    entries: list[Entry] = attrs.Factory(list)
    seen: dict[str, Span] = attrs.Factory(dict)
    merges: list[tuple[Node, Span]] = attrs.Factory(list)
    key: tuple[str, Span, bool] | None = None
    drop_value: bool = False


class _Builder:
    """Consumes parser events and assembles the tree, enforcing the caps."""

    def __init__(self, report: Reporter) -> None:
        self.report = report
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Node, int, int]] = {}  # node, size, height
        self.open_anchors: set[str] = set()
        self.nodes = 0
        self.aliases = 0
        self.root: Node | None = None
        self.documents = 0

    def feed(self, event: Any) -> None:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            node = self._scalar(event)
            if event.anchor:
                self._register(event.anchor, node, 1, 0)
            self._add(node, 1, 0)
        elif kind is yaml.AliasEvent:
            self._alias(event)
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            self._start(event)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            self._end()
        elif kind is yaml.DocumentStartEvent:
            self.documents += 1
            if self.documents > 1:
                self.report.error(
                    codes.YAML_SYNTAX,
                    "a workflow file holds exactly one YAML document; found a second one",
                    _span(event.start_mark),
                    hint="remove the extra '---' or split the file",
                )
                raise _Abort

    def _scalar(self, event: Any) -> Scalar:
        span = _span(event.start_mark, event.end_mark)
        style = event.style or None
        tag = event.tag
        if tag is None or tag == "!":
            plain = style is None and tag is None
            return Scalar(_resolve_plain(event.value) if plain else event.value, span, style)
        if not tag.startswith(_TAG) or tag[len(_TAG) :] not in {
            "str",
            "int",
            "float",
            "bool",
            "null",
        }:
            self.report.error(
                codes.UNSUPPORTED_TAG,
                f"unsupported YAML tag {tag!r}",
                span,
                hint="only the standard tags !!str, !!int, !!float, !!bool and !!null are allowed",
            )
            return Scalar(event.value, span, style)
        try:
            return Scalar(_resolve_tagged(tag, event.value), span, style)
        except ValueError as exc:
            self.report.error(codes.UNSUPPORTED_TAG, str(exc), span)
            return Scalar(event.value, span, style)

    def _alias(self, event: Any) -> None:
        span = _span(event.start_mark, event.end_mark)
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            self.report.error(
                codes.TOO_MANY_NODES,
                f"too many aliases: more than {MAX_ALIASES} '*alias' uses in one file",
                span,
            )
            raise _Abort
        if event.anchor in self.open_anchors:
            self.report.error(
                codes.YAML_SYNTAX, f"alias *{event.anchor} refers to a node that contains it", span
            )
            raise _Abort
        found = self.anchors.get(event.anchor)
        if found is None:
            self.report.error(
                codes.YAML_SYNTAX, f"alias *{event.anchor} names no anchor defined before it", span
            )
            self._add(Scalar(None, span), 1, 0)
            return
        node, size, height = found
        if len(self.stack) + height > MAX_DEPTH:
            self.report.error(
                codes.TOO_DEEP,
                f"nesting is too deep: alias *{event.anchor} used here nests mappings and lists "
                f"more than {MAX_DEPTH} levels deep",
                span,
            )
            raise _Abort
        self._add(node, size, height)

    def _start(self, event: Any) -> None:
        span = _span(event.start_mark, event.end_mark)
        if len(self.stack) >= MAX_DEPTH:
            self.report.error(
                codes.TOO_DEEP,
                f"nesting is too deep: mappings and lists may nest at most {MAX_DEPTH} levels",
                span,
            )
            raise _Abort
        if event.tag not in (None, "!") and event.tag not in _COLLECTION_TAGS:
            self.report.error(
                codes.UNSUPPORTED_TAG,
                f"unsupported YAML tag {event.tag!r}",
                span,
                hint="only the standard tags !!map and !!seq are allowed on collections",
            )
        if event.anchor:
            self.open_anchors.add(event.anchor)
        self.stack.append(_Frame(isinstance(event, yaml.MappingStartEvent), span, event.anchor))

    def _end(self) -> None:
        frame = self.stack.pop()
        node: Node
        if frame.is_map:
            node = Map.of(self._merged(frame), frame.span)
        else:
            node = Seq(tuple(frame.items), frame.span)
        if frame.anchor:
            self.open_anchors.discard(frame.anchor)
        self._register(frame.anchor, node, frame.size, frame.height)
        self._add(node, frame.size, frame.height, new=1)

    def _merged(self, frame: _Frame) -> tuple[Entry, ...]:
        if not frame.merges:
            return tuple(frame.entries)
        entries = list(frame.entries)
        present = {e.key for e in entries}
        for value, span in frame.merges:
            sources = value.items if isinstance(value, Seq) else (value,)
            for source in sources:
                if not isinstance(source, Map):
                    self.report.error(
                        codes.WRONG_TYPE,
                        "a merge key '<<' takes a mapping or a list of mappings",
                        span,
                    )
                    continue
                for entry in source.entries:
                    if entry.key not in present:
                        present.add(entry.key)
                        entries.append(entry)
        return tuple(entries)

    def _register(self, anchor: str | None, node: Node, size: int, height: int) -> None:
        if anchor:
            self.anchors[anchor] = (node, size, height)

    def _add(self, node: Node, size: int, height: int, new: int | None = None) -> None:
        """Attach a finished node: ``size`` nodes once expanded, ``height`` collection levels;
        ``new`` of them not counted yet (a collection's children were counted as they came)."""
        self.nodes += size if new is None else new
        if self.nodes > MAX_NODES:
            self.report.error(
                codes.TOO_MANY_NODES,
                f"file expands to more than {MAX_NODES} YAML nodes, the limit for workflow files "
                "(each alias counts as a full copy of what it names)",
                node.span,
                hint="an alias used inside repeatedly aliased nodes multiplies: is it an alias "
                "bomb?"
                if self.aliases
                else None,
            )
            raise _Abort
        if not self.stack:
            self.root = node
            return
        frame = self.stack[-1]
        frame.size += size
        if height >= frame.height:
            frame.height = height + 1
        if not frame.is_map:
            frame.items.append(node)
        elif frame.key is None and not frame.drop_value:
            self._key(frame, node)
        else:
            self._value(frame, node)

    def _key(self, frame: _Frame, node: Node) -> None:
        if isinstance(node, Scalar) and isinstance(node.value, str):
            is_merge = node.value == "<<" and node.style is None
            frame.key = (node.value, node.span, is_merge)
            return
        what = (
            "a mapping"
            if isinstance(node, Map)
            else "a list"
            if isinstance(node, Seq)
            else (repr(node.value) if node.value is not None else "null")
        )
        self.report.error(
            codes.KEY_NOT_STRING,
            f"mapping keys must be strings; this key is {what}",
            node.span,
            hint="quote the key" if isinstance(node, Scalar) else None,
        )
        frame.drop_value = True

    def _value(self, frame: _Frame, node: Node) -> None:
        if frame.drop_value:
            frame.drop_value = False
            return
        assert frame.key is not None
        key, span, is_merge = frame.key
        frame.key = None
        if is_merge:
            frame.merges.append((node, span))
            return
        first = frame.seen.get(key)
        if first is not None:
            self.report.error(
                codes.DUPLICATE_KEY,
                f"duplicate key {key!r} (first defined at line {first.line})",
                span,
            )
            return
        frame.seen[key] = span
        frame.entries.append(Entry(key, span, node))


def _syntax_error(exc: yaml.YAMLError, text: str, report: Reporter) -> None:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        message = f"{exc.context}: {problem}" if exc.context else problem
        span = Span(mark.line + 1, mark.column + 1) if mark else None
        hint = None
        lines = text.split("\n") if mark else []
        line_text = lines[mark.line] if mark and mark.line < len(lines) else ""
        if "\t" in line_text or "tab" in message.lower():
            hint = "YAML does not allow tabs for indentation; use spaces"
        report.error(codes.YAML_SYNTAX, f"invalid YAML: {message}", span, hint=hint)
    elif isinstance(exc, yaml.reader.ReaderError):
        line, column = _position(text, min(exc.position, len(text)))
        report.error(
            codes.YAML_SYNTAX,
            f"invalid YAML: control character 0x{exc.character:02x} is not allowed"
            if isinstance(exc.character, int)
            else f"invalid YAML: {exc.reason}",
            Span(line, column),
        )
    else:
        report.error(codes.YAML_SYNTAX, f"invalid YAML: {exc}", None)


def load_tree(text: str, report: Reporter) -> Node | None:
    """The file's single document as a tree, or None after reporting why there is none."""
    if len(text) > MAX_FILE_BYTES:  # at least as many bytes: too large without encoding it
        _too_large(report)
        return None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates in text handed over by an embedder
        pos = exc.start
        line, column = _position(text, pos)
        report.error(
            codes.NOT_UTF8,
            f"text holds a lone surrogate U+{ord(text[pos]):04X} that UTF-8 cannot encode "
            f"(line {line}, column {column})",
            Span(line, column),
        )
        return None
    if size > MAX_FILE_BYTES:
        _too_large(report)
        return None
    builder = _Builder(report)
    parser: Any = None
    try:
        parser = _Parser(text)  # the pure-Python reader already checks characters here
        while parser.check_event():
            builder.feed(parser.get_event())
    except _Abort:
        return None
    except yaml.YAMLError as exc:
        _syntax_error(exc, text, report)
        return None
    finally:
        if parser is not None:
            parser.dispose()
    root = builder.root
    if root is None or (isinstance(root, Scalar) and root.value is None):
        report.error(
            codes.EMPTY,
            "file is empty; expected a mapping with a 'workflow' or 'workflows' key",
            None,
        )
        return None
    return root


__all__ = ["decode", "load_tree"]
