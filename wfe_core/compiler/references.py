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

import attrs

from wfe_core.compiler import codes
from wfe_core.compiler.nodes import Scalar, Span
from wfe_core.compiler.report import Reporter
from wfe_core.compiler.suggest import did_you_mean
from wfe_core.interpolate import Reference, scan


@attrs.frozen
class StepInfo:
    """Where a step sits, for explaining why a reference to it is not allowed."""

    workflow_id: str
    order: int
    block: str | None  # the parallel block it is a direct child of
    span: Span


def locate(scalar: Scalar, source: str, start: int, end: int) -> Span:
    """The position of ``value[start:end]`` of a string scalar in the source text.

    Found by searching the scalar's source text for the substring (the n-th occurrence when it
    repeats); falls back to the scalar's own position when quoting escapes changed the text.
    """
    value = scalar.value
    span = scalar.span
    if not isinstance(value, str) or span.end <= span.start:
        return span
    needle = value[start:end]
    nth = value.count(needle, 0, start) if needle else 0
    raw = source[span.start : span.end]
    index = -1
    for _ in range(nth + 1):
        index = raw.find(needle, index + 1)
        if index == -1:
            return span
    newlines = raw.count("\n", 0, index)
    if newlines == 0:
        return Span(span.line, span.column + index, span.start + index, span.start + index)
    column = index - raw.rfind("\n", 0, index)
    return Span(span.line + newlines, column, span.start + index, span.start + index)


class RefChecker:
    """Checks the references of one step and records the steps it depends on."""

    def __init__(
        self,
        *,
        report: Reporter,
        source: str,
        workflow_id: str,
        inputs: Set[str],
        steps: Mapping[str, StepInfo],
        visible: Set[str],
        current: str,
    ) -> None:
        self.report = report
        self.source = source
        self.workflow_id = workflow_id
        self.inputs = inputs
        self.steps = steps
        self.visible = visible
        self.current = current
        self.depends: set[str] = set()

    def check_scalar(self, scalar: Scalar) -> None:
        """Check every reference inside a string scalar (no-op for other scalars)."""
        value = scalar.value
        if not isinstance(value, str) or "${{" not in value:
            return
        refs, problems = scan(value)
        for problem in problems:
            self.report.error(
                codes.BAD_EXPRESSION,
                problem.message,
                locate(scalar, self.source, problem.start, problem.end),
            )
        for ref in refs:
            self.check(ref, locate(scalar, self.source, ref.start, ref.end))

    def check(self, ref: Reference, span: Span) -> None:
        """Check one reference written at ``span``."""
        if ref.root == "inputs":
            if ref.name not in self.inputs:
                declared = ", ".join(sorted(self.inputs)) or "none"
                self.report.error(
                    codes.UNKNOWN_INPUT,
                    f"unknown input {ref.name!r} (workflow {self.workflow_id!r} declares: "
                    f"{declared})",
                    span,
                    hint=did_you_mean(ref.name, self.inputs),
                )
        elif ref.root == "steps":
            self._check_step(ref, span)

    def _check_step(self, ref: Reference, span: Span) -> None:
        name = ref.name
        info = self.steps.get(name)
        if info is None or info.workflow_id != self.workflow_id:
            where = f"; it belongs to workflow {info.workflow_id!r}" if info is not None else ""
            hint = did_you_mean(name, self.visible) if info is None else None
            self.report.error(codes.UNKNOWN_STEP, f"unknown step {name!r}{where}", span, hint=hint)
            return
        self.depends.add(name)
        if name in self.visible:
            return
        current = self.steps.get(self.current)
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


__all__ = ["RefChecker", "StepInfo", "locate"]
