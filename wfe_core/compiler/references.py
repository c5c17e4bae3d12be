"""Static checks of ``${{ ... }}`` references and ``when`` field paths.

A reference must name a declared input, or a step that has finished by the time the reading
step starts: an earlier step at the same level or anything nested in it, an earlier step of an
enclosing level, or, for an ``on_failure``/``ensure`` hook, the step it belongs to. Steps of the
same parallel block, later steps and the step itself are errors. Which names are visible is
decided by the builder (:mod:`~wfe_core.compiler.step_build`), which walks the steps in execution
order; this module only looks names up, so the whole check is linear in the file's size.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Protocol

import attrs

from wfe_core.compiler import codes
from wfe_core.compiler.nodes import Scalar, Span
from wfe_core.compiler.report import Reporter
from wfe_core.interpolate import Reference, ReferenceProblem, scan


@attrs.frozen
class StepInfo:
    """Where a step sits, for explaining why a reference to it is not allowed."""

    workflow_id: str
    order: int
    block: str | None  # the parallel block it is a direct child of
    span: Span
    is_block: bool = False  # a parallel block itself, which has no outputs


def locate_many(scalar: Scalar, source: str, pieces: list[tuple[int, int]]) -> list[Span]:
    """Positions in the source text of ``value[start:end]`` pieces of a string scalar.

    ``pieces`` must be in order and not overlap. One forward scan over the scalar's source text
    finds each piece after the previous one, so a scalar with thousands of references costs
    linear time. A piece that cannot be found (quoting escapes changed its text) gets the
    scalar's own position.
    """
    value = scalar.value
    span = scalar.span
    if not isinstance(value, str) or span.end <= span.start:
        return [span] * len(pieces)
    raw = source[span.start : span.end]
    found: list[Span] = []
    search_from = 0
    line, line_start = span.line, -1  # -1: still on the scalar's first line
    counted_to = 0
    for start, end in pieces:
        needle = value[start:end]
        index = raw.find(needle, search_from) if needle else -1
        escaped_in_value = start > 0 and value[start - 1] == "$"
        while index > 0 and raw[index - 1] == "$" and not escaped_in_value:
            index = raw.find(needle, index + 1)  # that one was an escaped "$${{"
        if index == -1:
            found.append(span)
            continue
        newline = raw.rfind("\n", counted_to, index)
        if newline != -1:
            line += raw.count("\n", counted_to, index)
            line_start = newline
        counted_to = index
        column = span.column + index if line_start == -1 else index - line_start
        found.append(Span(line, column, span.start + index, span.start + index))
        search_from = index + len(needle)
    return found


def locate(scalar: Scalar, source: str, start: int, end: int) -> Span:
    """The position of ``value[start:end]`` of a string scalar in the source text."""
    return locate_many(scalar, source, [(start, end)])[0]


class RefScope(Protocol):
    """What checking references needs to know about the workflow being built (the builder's
    :class:`~wfe_core.compiler.step_build.BuildContext` is one). ``visible`` changes as the
    builder walks the steps; the checker only reads it."""

    @property
    def report(self) -> Reporter: ...
    @property
    def source(self) -> str: ...
    @property
    def workflow_id(self) -> str: ...
    @property
    def inputs(self) -> Set[str]: ...
    @property
    def inputs_text(self) -> str: ...  # the declared inputs for messages, listed once
    @property
    def steps(self) -> Mapping[str, StepInfo]: ...
    @property
    def visible(self) -> Set[str]: ...


class RefChecker:
    """Checks the references of one step and records the steps it depends on."""

    def __init__(self, scope: RefScope, current: str) -> None:
        self.scope = scope
        self.report = scope.report
        self.source = scope.source
        self.current = current
        self.depends: set[str] = set()

    def check_scalar(self, scalar: Scalar) -> None:
        """Check every reference inside a string scalar (no-op for other scalars)."""
        value = scalar.value
        if not isinstance(value, str) or "${{" not in value:
            return
        refs, problems = scan(value)
        items: list[Reference | ReferenceProblem] = sorted(
            [*refs, *problems], key=lambda item: item.start
        )
        spans = locate_many(scalar, self.source, [(i.start, i.end) for i in items])
        for item, span in zip(items, spans, strict=True):
            if isinstance(item, ReferenceProblem):
                self.report.error(codes.BAD_EXPRESSION, item.message, span)
            else:
                self.check(item, span)

    def check(self, ref: Reference, span: Span) -> None:
        """Check one reference written at ``span``."""
        if ref.root == "inputs":
            scope = self.scope
            if ref.name not in scope.inputs:
                self.report.error(
                    codes.UNKNOWN_INPUT,
                    f"unknown input {ref.name!r} (workflow {scope.workflow_id!r} declares: "
                    f"{scope.inputs_text})",
                    span,
                    hint=self.report.suggest(ref.name, scope.inputs),
                )
        elif ref.root == "steps":
            self._check_step(ref, span)

    def _check_step(self, ref: Reference, span: Span) -> None:
        name = ref.name
        scope = self.scope
        info = scope.steps.get(name)
        if info is None or info.workflow_id != scope.workflow_id:
            where = f"; it belongs to workflow {info.workflow_id!r}" if info is not None else ""
            hint = self.report.suggest(name, scope.visible) if info is None else None
            self.report.error(codes.UNKNOWN_STEP, f"unknown step {name!r}{where}", span, hint=hint)
            return
        self.depends.add(name)
        if info.is_block:
            self.report.error(
                codes.UNKNOWN_STEP,
                f"step {name!r} is a parallel block, which has no outputs",
                span,
                hint="read the outputs of a step inside the block",
            )
            return
        if name in scope.visible:
            return
        current = scope.steps.get(self.current)
        if name == self.current:
            message = f"step {name!r} cannot read its own outputs"
        elif current is not None and info.block is not None and info.block == current.block:
            message = (
                f"step {name!r} runs in parallel with {self.current!r} (both in block "
                f"{info.block!r}), so its outputs are not available"
            )
        elif current is not None and info.order > current.order:
            message = f"step {name!r} runs after {self.current!r}, so its outputs are not available"
        else:
            message = (
                f"step {name!r} does not run before {self.current!r}, so its outputs are not "
                "available"
            )
        self.report.error(codes.NOT_BEFORE, message, span)


__all__ = ["RefChecker", "RefScope", "StepInfo", "locate", "locate_many"]
