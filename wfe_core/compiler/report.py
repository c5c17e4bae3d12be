"""Collecting diagnostics while compiling, so that every problem is reported in one go."""

from __future__ import annotations

from collections.abc import Collection

from wfe_core.compiler.nodes import Node, Span
from wfe_core.compiler.suggest import did_you_mean
from wfe_core.contracts import Diagnostic, Severity


def span_of(at: Node | Span | None) -> Span | None:
    if at is None or isinstance(at, Span):
        return at
    return at.span


class Reporter:
    """Accumulates diagnostics for one file; ``sorted()`` gives them in file order."""

    HINT_BUDGET = 50_000
    """How many word comparisons "did you mean" searches may make per file. Each search compares
    a word with every candidate; without a budget, a hostile file with thousands of unknown names
    and thousands of steps would make them quadratic. Small candidate sets (keys, operators)
    never count against it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        self.hint_budget = self.HINT_BUDGET

    def suggest(self, word: str, candidates: Collection[str]) -> str | None:
        """A "did you mean" hint, while the comparison budget lasts."""
        cost = len(candidates)
        if cost > 50:
            if cost > self.hint_budget:
                return None
            self.hint_budget -= cost
        return did_you_mean(word, candidates)

    def error(
        self, code: str, message: str, at: Node | Span | None, hint: str | None = None
    ) -> None:
        self._add(code, message, at, hint, Severity.ERROR)

    def warning(
        self, code: str, message: str, at: Node | Span | None, hint: str | None = None
    ) -> None:
        self._add(code, message, at, hint, Severity.WARNING)

    def add(self, diagnostic: Diagnostic) -> None:
        self.diagnostics.append(diagnostic)

    def _add(
        self,
        code: str,
        message: str,
        at: Node | Span | None,
        hint: str | None,
        severity: Severity,
    ) -> None:
        span = span_of(at)
        line, column = (span.line, span.column) if span else (0, 0)
        self.diagnostics.append(Diagnostic(code, message, self.file, line, column, severity, hint))

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    def sorted(self) -> tuple[Diagnostic, ...]:
        """All diagnostics in file order (stable for ones at the same place)."""
        return tuple(sorted(self.diagnostics, key=lambda d: (d.line, d.column)))


__all__ = ["Reporter", "span_of"]
