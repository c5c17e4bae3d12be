"""``${{ ... }}`` references in config strings: parsing them and substituting their values.

Three roots can be read, nothing else (no operators, no function calls, no code):

- ``${{ inputs.NAME }}``: a workflow input;
- ``${{ steps.STEP.outputs.KEY }}``: an output of a step that ran earlier;
- ``${{ env.NAME }}``: an environment variable of the ``wfe`` process.

A path may continue into structured values (``steps.build.outputs.tags.0``): each further
segment is a mapping key or a list index. ``$${{`` writes a literal ``${{``.

Substitution always produces strings, even when a string is exactly one reference: strings are
inserted as they are, ``None`` as the empty string, and everything else (numbers, booleans,
lists, mappings) as JSON (``true``, ``3``, ``["a","b"]``). A config field typed as a number or a
boolean is then structured from that text, which the default converter accepts
(``"3"`` for an int, ``"true"`` for a bool). Keys of mappings are never interpolated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

OPEN = "${{"
CLOSE = "}}"
_ESCAPED_OPEN = "$${{"

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_SEGMENT = r"[A-Za-z0-9_-]+"
_INPUTS = re.compile(rf"inputs\.({_NAME})((?:\.{_SEGMENT})*)\Z")
_ENV = re.compile(r"env\.([A-Za-z_][A-Za-z0-9_]*)\Z")
_STEPS = re.compile(rf"steps\.({_NAME})\.outputs\.({_SEGMENT})((?:\.{_SEGMENT})*)\Z")

Root = Literal["inputs", "steps", "env"]


class InterpolationError(Exception):
    """A reference could not be parsed or resolved; the message is meant for the user."""


@attrs.frozen
class Reference:
    """One parsed reference.

    ``start``/``end`` are offsets of the whole ``${{ ... }}`` text in the string it came from
    (both 0 for a bare field path). ``name`` is the input, step or variable name; ``key`` the
    output key of a ``steps`` reference; ``rest`` the further segments into the value.
    """

    root: Root
    name: str
    key: str | None = None
    rest: tuple[str, ...] = ()
    start: int = 0
    end: int = 0
    text: str = ""

    @property
    def path(self) -> str:
        """The dotted path, e.g. ``steps.build.outputs.digest``."""
        if self.root == "steps":
            parts = ["steps", self.name, "outputs", self.key or ""]
        else:
            parts = [self.root, self.name]
        return ".".join([*parts, *self.rest])


@attrs.frozen
class ReferenceProblem:
    """A malformed ``${{ ... }}`` expression, with its offsets in the string."""

    message: str
    start: int
    end: int


def _split(tail: str) -> tuple[str, ...]:
    return tuple(tail[1:].split(".")) if tail else ()


def parse_path(path: str) -> Reference:
    """Parse a bare path (``inputs.tag``, ``steps.test.outputs.exit_code``, ``env.HOME``).

    Raises :class:`InterpolationError` explaining what is wrong with it.
    """
    expr = path.strip()
    if not expr:
        raise InterpolationError(
            "empty expression: expected inputs.NAME, steps.STEP.outputs.KEY or env.NAME"
        )
    if match := _INPUTS.match(expr):
        return Reference("inputs", match[1], None, _split(match[2]), text=path)
    if match := _ENV.match(expr):
        return Reference("env", match[1], text=path)
    if match := _STEPS.match(expr):
        return Reference("steps", match[1], match[2], _split(match[3]), text=path)
    raise InterpolationError(_explain(expr))


def _explain(expr: str) -> str:
    root = expr.split(".", 1)[0]
    if any(c in expr for c in " |&!=<>()+'\"[]"):
        return (
            f"unsupported expression {expr!r}: only plain references are allowed "
            "(inputs.NAME, steps.STEP.outputs.KEY, env.NAME), no operators or function calls"
        )
    if root == "steps":
        return f"invalid step reference {expr!r}: write steps.STEP.outputs.KEY"
    if root == "inputs":
        return f"invalid input reference {expr!r}: write inputs.NAME"
    if root == "env":
        return f"invalid environment reference {expr!r}: write env.NAME"
    return (
        f"unknown expression root {root!r} in {expr!r}: expressions read inputs.NAME, "
        "steps.STEP.outputs.KEY or env.NAME"
    )


def scan(text: str) -> tuple[list[Reference], list[ReferenceProblem]]:
    """Every reference in ``text`` and every malformed ``${{`` expression, in order."""
    refs: list[Reference] = []
    problems: list[ReferenceProblem] = []
    if OPEN not in text:
        return refs, problems
    pos = 0
    while (start := text.find(OPEN, pos)) != -1:
        if start > 0 and text[start - 1] == "$":  # "$${{" is a literal "${{"
            pos = start + len(OPEN)
            continue
        close = text.find(CLOSE, start + len(OPEN))
        if close == -1:
            problems.append(ReferenceProblem("unterminated '${{': missing '}}'", start, len(text)))
            break
        end = close + len(CLOSE)
        inner = text[start + len(OPEN) : close]
        if OPEN in inner:
            problems.append(ReferenceProblem("'${{' inside another '${{'", start, end))
        else:
            try:
                ref = parse_path(inner)
            except InterpolationError as exc:
                problems.append(ReferenceProblem(str(exc), start, end))
            else:
                refs.append(attrs.evolve(ref, start=start, end=end, text=text[start:end]))
        pos = end
    return refs, problems


def references(text: str) -> list[Reference]:
    """The references in ``text``; raises :class:`InterpolationError` if one is malformed."""
    refs, problems = scan(text)
    if problems:
        raise InterpolationError(problems[0].message)
    return refs


def _walk(value: Any, rest: Sequence[str], ref: Reference) -> Any:
    for segment in rest:
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list | tuple) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            raise InterpolationError(f"{ref.path}: {segment!r} not found in the value")
    return value


def resolve(
    ref: Reference,
    *,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str],
) -> Any:
    """The value a reference denotes at run time; raises :class:`InterpolationError` if absent."""
    if ref.root == "inputs":
        if ref.name not in inputs:
            raise InterpolationError(f"input {ref.name!r} has no value")
        return _walk(inputs[ref.name], ref.rest, ref)
    if ref.root == "env":
        if ref.name not in env:
            raise InterpolationError(f"environment variable {ref.name!r} is not set")
        return env[ref.name]
    step_outputs = outputs.get(ref.name)
    if step_outputs is None:
        raise InterpolationError(
            f"step {ref.name!r} has no outputs (it has not run, or it was skipped)"
        )
    assert ref.key is not None
    if ref.key not in step_outputs:
        known = ", ".join(sorted(step_outputs)) or "none"
        raise InterpolationError(
            f"step {ref.name!r} has no output {ref.key!r} (its outputs: {known})"
        )
    return _walk(step_outputs[ref.key], ref.rest, ref)


def to_text(value: Any) -> str:
    """How a value is written into a string: strings as is, None as '', the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def interpolate_string(
    text: str,
    *,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str],
) -> str:
    """``text`` with every reference replaced and every ``$${{`` turned into ``${{``."""
    if OPEN not in text:
        return text
    refs = references(text)
    parts: list[str] = []
    pos = 0
    for ref in refs:
        parts.append(text[pos : ref.start].replace(_ESCAPED_OPEN, OPEN))
        parts.append(to_text(resolve(ref, inputs=inputs, outputs=outputs, env=env)))
        pos = ref.end
    parts.append(text[pos:].replace(_ESCAPED_OPEN, OPEN))
    return "".join(parts)


def interpolate(
    data: Any,
    *,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str],
) -> Any:
    """A copy of ``data`` (nested dicts, lists, scalars) with every string interpolated."""
    if isinstance(data, str):
        return interpolate_string(data, inputs=inputs, outputs=outputs, env=env)
    if isinstance(data, Mapping):
        return {k: interpolate(v, inputs=inputs, outputs=outputs, env=env) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [interpolate(v, inputs=inputs, outputs=outputs, env=env) for v in data]
    return data


__all__ = [
    "InterpolationError",
    "Reference",
    "ReferenceProblem",
    "interpolate",
    "interpolate_string",
    "parse_path",
    "references",
    "resolve",
    "scan",
    "to_text",
]
