"""``when:`` conditions: leaves ``{field, <operator>: value}`` and the combinators
``all``/``any``/``none``/``one_of`` (lists) and ``not`` (one condition).

A mapping with ``field`` is a leaf and needs exactly one operator; any other mapping is a
combinator and needs exactly one combinator key. Field paths are bare references
(``steps.test.outputs.exit_code``) and are checked like ``${{ ... }}`` references; compared
values are literals (a ``${{ ... }}`` in them is an error, since the runner compares values as
written).
"""

from __future__ import annotations

from wfe_core.compiler import codes
from wfe_core.compiler.nodes import Map, Node, Scalar, iter_scalars, to_plain
from wfe_core.compiler.references import RefChecker, locate
from wfe_core.compiler.report import Reporter
from wfe_core.compiler.shapes import expect_map, expect_seq
from wfe_core.compiler.suggest import did_you_mean, one_of
from wfe_core.interpolate import InterpolationError, parse_path, scan
from wfe_core.model import Combine, Compare, Condition, Not

OPERATORS = ("equals", "not_equals", "gt", "gte", "lt", "lte", "contains", "is_null", "is_not_null")
ORDERING = ("gt", "gte", "lt", "lte")
NULL_CHECKS = ("is_null", "is_not_null")
LISTS = ("all", "any", "none", "one_of")
COMBINATORS = (*LISTS, "not")


def _literal_only(node: Node, refs: RefChecker, report: Reporter) -> bool:
    """Report ``${{ ... }}`` inside a compared value: values are compared as written."""
    ok = True
    for scalar in iter_scalars(node):
        text = scalar.value
        if not isinstance(text, str) or "${{" not in text:
            continue
        found, problems = scan(text)
        if found or problems:
            start = found[0].start if found else problems[0].start
            report.error(
                codes.CONDITION,
                "a condition compares 'field' with a literal value; the value cannot "
                "hold a ${{ ... }} reference",
                locate(scalar, refs.source, start, start + 3),
                hint="compare the referenced value in 'field' instead",
            )
            ok = False
    return ok


def _leaf(mapping: Map, refs: RefChecker, report: Reporter) -> Condition | None:
    ok = True
    for entry in mapping.entries:
        if entry.key != "field" and entry.key not in OPERATORS:
            hint = did_you_mean(entry.key, (*OPERATORS, "field"))
            report.error(
                codes.UNKNOWN_KEY,
                f"unknown key {entry.key!r} in a condition",
                entry.key_span,
                hint=hint or "operators: " + ", ".join(OPERATORS),
            )
            ok = False
    ops = [e for e in mapping.entries if e.key in OPERATORS]
    if not ops and not ok:  # the unknown key reported is most likely the misspelt operator
        return None
    if len(ops) != 1:
        found = ", ".join(e.key for e in ops) if ops else "none"
        report.error(
            codes.CONDITION,
            f"a condition needs exactly one operator ({', '.join(OPERATORS)}); found {found}",
            mapping,
        )
        return None
    op = ops[0]
    path = _field_path(mapping.index["field"].value, refs, report)
    ok = _operand_fits(op.key, op.value, report) and ok
    ok = _literal_only(op.value, refs, report) and ok
    if path is None or not ok:
        return None
    value = None if op.key in NULL_CHECKS else to_plain(op.value)
    return Compare(path, op.key, value)


def _field_path(node: Node, refs: RefChecker, report: Reporter) -> str | None:
    """The checked path a leaf's ``field`` names (``${{ }}`` around it tolerated), or None."""
    if not (isinstance(node, Scalar) and isinstance(node.value, str)):
        report.error(
            codes.FIELD_PATH, "'field' must be a string such as steps.STEP.outputs.KEY", node
        )
        return None
    text = node.value.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    try:
        ref = parse_path(text)
    except InterpolationError as exc:
        hint = "write steps.STEP.outputs.KEY" if text.startswith(".") else None
        report.error(codes.FIELD_PATH, f"invalid field path: {exc}", node, hint=hint)
        return None
    refs.check(ref, node.span)
    return ref.path


def _operand_fits(op: str, node: Node, report: Reporter) -> bool:
    """Ordering operators compare with a number; the null checks are written ``op: true``."""
    if op in ORDERING:
        if not (
            isinstance(node, Scalar)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            report.error(codes.CONDITION, f"'{op}' compares with a number", node)
            return False
    elif op in NULL_CHECKS and not (isinstance(node, Scalar) and node.value is True):
        report.error(codes.CONDITION, f"write '{op}: true'", node)
        return False
    return True


def parse_condition(node: Node, refs: RefChecker, report: Reporter) -> Condition | None:
    """The condition written at ``node``, or None after reporting what is wrong with it."""
    mapping = expect_map(node, "a condition", report)
    if mapping is None:
        return None
    if "field" in mapping.index:
        return _leaf(mapping, refs, report)
    keys = [e for e in mapping.entries if e.key in COMBINATORS]
    for entry in mapping.entries:
        if entry.key not in COMBINATORS:
            hint = did_you_mean(entry.key, (*COMBINATORS, *OPERATORS, "field"))
            report.error(
                codes.UNKNOWN_KEY,
                f"unknown key {entry.key!r} in a condition",
                entry.key_span,
                hint=hint or f"a condition is a leaf with 'field' or one of {one_of(COMBINATORS)}",
            )
    if len(keys) != 1:
        if keys or not mapping.entries:
            report.error(
                codes.CONDITION,
                f"a condition needs exactly one of {one_of(COMBINATORS)}, or 'field' "
                "with an operator",
                mapping,
            )
        return None
    entry = keys[0]
    if entry.key == "not":
        inner = parse_condition(entry.value, refs, report)
        return Not(inner) if inner is not None else None
    items = expect_seq(entry.value, f"'{entry.key}'", report)
    if items is None:
        return None
    if not items.items:
        report.error(codes.CONDITION, f"'{entry.key}' needs at least one condition", items)
        return None
    parsed = [parse_condition(item, refs, report) for item in items.items]
    conditions = tuple(c for c in parsed if c is not None)
    if len(conditions) != len(parsed):
        return None
    return Combine(entry.key, conditions)


__all__ = ["COMBINATORS", "OPERATORS", "parse_condition"]
