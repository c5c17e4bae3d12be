"""Compile-time handling of one step's ``config:``: structure it, map problems to positions,
run the executor's validators.

Values holding ``${{ ... }}`` references are only known at run time. A structuring problem
located at such a value (``push: "${{ inputs.push }}"`` for a bool field) is therefore not an
error now; the config is then left unstructured (``Step.config`` is None), validators are
skipped, and the runner structures it after interpolation. The exception is a reference where a
list or mapping is needed: interpolation always gives text, so that can never work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from wfe_core.compiler import codes
from wfe_core.compiler.config import ConfigError, format_path, structure_config
from wfe_core.compiler.nodes import Map, Node, Scalar, Seq, Span
from wfe_core.compiler.report import Reporter
from wfe_core.contracts import (
    ConfigPath,
    Diagnostic,
    ExecutorPlugin,
    ValidationContext,
    Validator,
    has_reference,
)


def find(root: Node | None, path: ConfigPath, fallback: Span) -> tuple[Node | None, Span]:
    """The node at ``path`` under ``root`` and the span to report (a key's span for mapping
    entries); stops at the deepest existing parent."""
    node = root
    span = fallback
    for part in path:
        if isinstance(node, Map) and isinstance(part, str) and part in node.index:
            entry = node.index[part]
            node, span = entry.value, entry.key_span
        elif isinstance(node, Seq) and isinstance(part, int) and 0 <= part < len(node.items):
            node = node.items[part]
            span = node.span
        else:
            return None, span
    return node, span


def locator(root: Node | None, fallback: Span) -> Callable[[ConfigPath], tuple[int, int]]:
    def locate(path: ConfigPath) -> tuple[int, int]:
        _node, span = find(root, path, fallback)
        return span.line, span.column

    return locate


_CODES = {"unknown": codes.CONFIG_UNKNOWN_KEY, "missing": codes.CONFIG_MISSING_KEY}
"""Diagnostic codes of the :class:`ConfigProblem` kinds that have their own (else WFE050)."""


def check_config(
    plugin: ExecutorPlugin,
    data: dict[str, Any],
    root: Node | None,
    anchor: Span,
    *,
    report: Reporter,
    workflow_id: str,
    step_name: str,
    base_dir: Path,
) -> Any:
    """The structured config, or None (after reporting problems, if any were real)."""
    try:
        config = structure_config(plugin, data)
    except ConfigError as exc:
        _report_problems(exc, plugin, root, anchor, report, step_name)
        return None
    context = ValidationContext(
        file=report.file,
        workflow_id=workflow_id,
        step_name=step_name,
        base_dir=base_dir,
        locator=locator(root, anchor),
    )
    for validator in plugin.validators:
        _validate(validator, config, context, plugin, anchor, report)
    return config


def _report_problems(
    exc: ConfigError,
    plugin: ExecutorPlugin,
    root: Node | None,
    anchor: Span,
    report: Reporter,
    step_name: str,
) -> None:
    """One diagnostic per structuring problem, at the offending key, except value problems at
    a ``${{ ... }}`` reference (its text is only known at run time)."""
    for problem in exc.problems:
        node, span = find(root, problem.path, anchor)
        hint = problem.hint
        if isinstance(node, Scalar) and has_reference(node.value):
            if problem.kind == "invalid":
                continue  # text from the reference may fit once it is known
            if problem.kind == "shape":
                hint = "a ${{ ... }} reference always gives text, never a list or mapping"
        code = _CODES.get(problem.kind, codes.CONFIG_INVALID)
        where = format_path(problem.path)
        prefix = f"config.{where}: " if where and problem.kind in ("invalid", "shape") else ""
        report.error(
            code,
            f"{prefix}{problem.message} (step {step_name!r}, type {plugin.name!r})",
            span,
            hint=hint,
        )


def _validate(
    validator: Validator,
    config: Any,
    context: ValidationContext,
    plugin: ExecutorPlugin,
    anchor: Span,
    report: Reporter,
) -> None:
    """Run one plugin validator; a validator that raises or yields something other than
    diagnostics is reported as a plugin bug, never a traceback."""
    name = getattr(validator, "__qualname__", repr(validator))
    try:
        found = list(validator(config, context))
    except Exception as exc:
        report.error(
            codes.PLUGIN_FAILED,
            f"validator {name} of executor {plugin.name!r} failed: {type(exc).__name__}: {exc}",
            anchor,
            hint="this is a bug in the executor plugin",
        )
        return
    for diagnostic in found:
        if isinstance(diagnostic, Diagnostic):
            if diagnostic.file != report.file:  # built by hand, without the context
                diagnostic = attrs.evolve(diagnostic, file=report.file)
            report.add(diagnostic)
        else:
            report.error(
                codes.PLUGIN_FAILED,
                f"validator {name} of executor {plugin.name!r} yielded "
                f"{type(diagnostic).__name__}, not a Diagnostic",
                anchor,
            )


__all__ = ["check_config", "find", "locator"]
