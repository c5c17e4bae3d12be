"""Checking the shape of tree nodes ("expected a mapping, got a list") and their keys.

Each helper reports what is wrong and returns None, so callers carry on and find more problems.
"""

from __future__ import annotations

from collections.abc import Collection

from wfe_core.compiler import codes
from wfe_core.compiler.nodes import Map, Node, Scalar, Seq, kind_of
from wfe_core.compiler.report import Reporter
from wfe_core.compiler.suggest import did_you_mean


def expect_map(node: Node, what: str, report: Reporter) -> Map | None:
    if isinstance(node, Map):
        return node
    report.error(codes.WRONG_TYPE, f"{what} must be a mapping, got {kind_of(node)}", node)
    return None


def expect_seq(node: Node, what: str, report: Reporter) -> Seq | None:
    if isinstance(node, Seq):
        return node
    report.error(codes.WRONG_TYPE, f"{what} must be a list, got {kind_of(node)}", node)
    return None


def expect_str(node: Node, what: str, report: Reporter) -> str | None:
    if isinstance(node, Scalar) and isinstance(node.value, str):
        return node.value
    report.error(codes.WRONG_TYPE, f"{what} must be a string, got {kind_of(node)}", node)
    return None


def expect_bool(node: Node, what: str, report: Reporter) -> bool | None:
    if isinstance(node, Scalar) and isinstance(node.value, bool):
        return node.value
    report.error(codes.WRONG_TYPE, f"{what} must be true or false, got {kind_of(node)}", node)
    return None


def check_keys(
    mapping: Map,
    allowed: Collection[str],
    what: str,
    report: Reporter,
    *,
    required: Collection[str] = (),
    extension_prefix: str | None = None,
) -> None:
    """Report unknown keys (with a did-you-mean hint) and missing required ones."""
    for entry in mapping.entries:
        if entry.key in allowed:
            continue
        if extension_prefix and entry.key.startswith(extension_prefix):
            continue
        hint = did_you_mean(entry.key, allowed) or "allowed keys: " + ", ".join(allowed)
        report.error(
            codes.UNKNOWN_KEY, f"unknown key {entry.key!r} in {what}", entry.key_span, hint=hint
        )
    for key in required:
        if key not in mapping.index:
            report.error(codes.MISSING_KEY, f"{what} is missing the required key {key!r}", mapping)


__all__ = ["check_keys", "expect_bool", "expect_map", "expect_seq", "expect_str"]
