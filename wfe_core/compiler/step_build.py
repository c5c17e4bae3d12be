"""Second pass over steps: turn drafts into :class:`~wfe_core.model.Step` values.

Steps are visited in execution order while a single set of "finished" step names is kept up to
date (names are added once and removed once, so the pass is linear): a step sees what finished
before it, the children of a parallel block see what finished before the block but not each
other, and a step's ``on_failure``/``ensure`` hooks see the step and everything inside it
(``ensure`` also sees ``on_failure``, which runs first).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from wfe_core.compiler import codes
from wfe_core.compiler.conditions import parse_condition
from wfe_core.compiler.config_check import check_config
from wfe_core.compiler.durations import DurationError, parse_duration
from wfe_core.compiler.nodes import Entry, Node, Scalar, iter_scalars, kind_of, to_plain
from wfe_core.compiler.references import RefChecker, StepInfo
from wfe_core.compiler.report import Reporter
from wfe_core.compiler.shapes import check_keys, expect_bool, expect_map, expect_str
from wfe_core.compiler.step_syntax import StepDraft
from wfe_core.compiler.suggest import listing
from wfe_core.model import Condition, Location, RetryPolicy, Step
from wfe_core.plugins import PluginRegistry

RETRY_KEYS = ("max_attempts", "interval", "backoff", "max_interval")


@attrs.define
class BuildContext:
    """What building the steps of one workflow needs (mutable: ``visible`` changes). It is also
    the :class:`~wfe_core.compiler.references.RefScope` every step's reference checker reads."""

    report: Reporter
    registry: PluginRegistry
    source: str
    base_dir: Path
    workflow_id: str
    inputs: frozenset[str]
    inputs_text: str
    steps: Mapping[str, StepInfo]
    visible: set[str] = attrs.Factory(set)


def _duration(entry: Entry | None, what: str, report: Reporter, *, positive: bool) -> float | None:
    if entry is None:
        return None
    node = entry.value
    if not isinstance(node, Scalar):
        report.error(
            codes.DURATION, f"{what}: expected a duration such as 30s, got {kind_of(node)}", node
        )
        return None
    try:
        seconds = parse_duration(node.value)
    except DurationError as exc:
        report.error(codes.DURATION, f"{what}: {exc}", node)
        return None
    if positive and seconds <= 0:
        report.error(codes.DURATION, f"{what} must be greater than zero, got {node.value!r}", node)
        return None
    return seconds


def _number(node: Node) -> float | None:
    if (
        isinstance(node, Scalar)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    return None


def _retry(entry: Entry | None, report: Reporter) -> RetryPolicy | None:
    if entry is None:
        return None
    mapping = expect_map(entry.value, "'retry'", report)
    if mapping is None:
        return None
    check_keys(mapping, RETRY_KEYS, "'retry'", report)
    fields: dict[str, Any] = {}
    ok = True
    if (attempts := mapping.get("max_attempts")) is not None:
        value = attempts.value
        if (
            isinstance(value, Scalar)
            and isinstance(value.value, int)
            and not isinstance(value.value, bool)
            and value.value >= 1
        ):
            fields["max_attempts"] = value.value
        else:
            report.error(codes.RETRY, "'max_attempts' must be an integer of at least 1", value)
            ok = False
    for key in ("interval", "max_interval"):
        if key in mapping.index:
            seconds = _duration(mapping.get(key), f"'{key}'", report, positive=False)
            if seconds is None:
                ok = False
            else:
                fields[key] = seconds
    if (backoff := mapping.get("backoff")) is not None:
        number = _number(backoff.value)
        if number is None or not number >= 1 or number > 1000:
            report.error(
                codes.RETRY, "'backoff' must be a number between 1 and 1000", backoff.value
            )
            ok = False
        else:
            fields["backoff"] = number
    return RetryPolicy(**fields) if ok else None


def _executor(
    draft: StepDraft, refs: RefChecker, ctx: BuildContext
) -> tuple[str | None, Any, dict[str, Any]]:
    """Type, structured config and raw config of an executor step."""
    report = ctx.report
    assert draft.type is not None
    type_name = expect_str(draft.type.value, "'type'", report)
    config_node: Node | None = None
    raw: dict[str, Any] = {}
    if draft.config is not None:
        mapping = expect_map(draft.config.value, "'config'", report)
        if mapping is not None:
            config_node = mapping
            for scalar in iter_scalars(mapping):
                refs.check_scalar(scalar)
            raw = to_plain(mapping)
    if type_name is None:
        return None, None, raw
    plugin = ctx.registry.get(type_name)
    if plugin is None:
        problem = ctx.registry.error(type_name)
        if problem is not None:
            report.error(
                codes.PLUGIN_BROKEN,
                f"executor type {type_name!r} cannot be used: {problem}",
                draft.type.value,
            )
        else:
            known = ctx.registry.names()
            report.error(
                codes.UNKNOWN_TYPE,
                f"unknown step type {type_name!r}; installed types: {listing(known, 30)}",
                draft.type.value,
                hint=report.suggest(type_name, known),
            )
        return type_name, None, raw
    if draft.config is not None and config_node is None:
        return type_name, None, raw
    anchor = draft.config.key_span if draft.config is not None else draft.type.key_span
    config = check_config(
        plugin,
        raw,
        config_node,
        anchor,
        report=report,
        workflow_id=ctx.workflow_id,
        step_name=draft.name,
        base_dir=ctx.base_dir,
    )
    return type_name, config, raw


def _kind(draft: StepDraft, report: Reporter) -> None:
    """Report a step that is neither an executor step nor a parallel block, or both."""
    if draft.parallel_entry is not None:
        for entry in (draft.type, draft.config):
            if entry is not None:
                report.error(
                    codes.STEP_KIND,
                    f"{entry.key!r} is not allowed together with 'parallel'",
                    entry.key_span,
                )
        if draft.retry is not None:
            report.error(
                codes.STEP_KIND,
                "'retry' is not supported on a parallel block; put it on the steps inside",
                draft.retry.key_span,
            )
    elif draft.type is None:
        if draft.config is not None:
            report.error(codes.STEP_KIND, "'config' needs a 'type'", draft.config.key_span)
        else:
            report.error(
                codes.STEP_KIND,
                f"step {draft.name!r} needs 'type' (with 'config') or 'parallel'",
                draft.node,
            )


def _reveal(drafts: list[StepDraft], ctx: BuildContext) -> list[str]:
    """Make the names of ``drafts`` visible to the steps built next; return the ones that were
    not visible yet, for the caller to hide again when its scope ends."""
    added = [d.name for d in drafts if d.name and d.name not in ctx.visible]
    ctx.visible.update(added)
    return added


def build_step(draft: StepDraft, ctx: BuildContext) -> Step:
    """Build one step (and what it contains); ``ctx.visible`` is unchanged on return."""
    report = ctx.report
    refs = RefChecker(ctx, draft.name)
    _kind(draft, report)
    when: Condition | None = None
    if draft.when is not None:
        when = parse_condition(draft.when.value, refs, report)
    type_name: str | None = None
    config: Any = None
    raw: dict[str, Any] = {}
    if draft.parallel_entry is None and draft.type is not None:
        type_name, config, raw = _executor(draft, refs, ctx)
    children = tuple(build_step(child, ctx) for child in draft.parallel)
    timeout = _duration(draft.timeout, "'timeout'", report, positive=True)
    retry = _retry(draft.retry, report)
    continue_on_error = False
    if draft.continue_on_error is not None:
        continue_on_error = bool(
            expect_bool(draft.continue_on_error.value, "'continue_on_error'", report)
        )
    added = _reveal(draft.step_and_block(), ctx)  # the hooks see the step and what it contains
    on_failure = None
    if draft.on_failure is not None:
        on_failure = build_step(draft.on_failure, ctx)
        added += _reveal(draft.on_failure.everything(), ctx)  # ensure runs after on_failure
    ensure = build_step(draft.ensure, ctx) if draft.ensure else None
    ctx.visible.difference_update(added)
    return Step(
        name=draft.name,
        location=Location(report.file, draft.node.span.line, draft.node.span.column),
        type=type_name if draft.parallel_entry is None else None,
        config=config,
        raw_config=raw,
        parallel=children,
        when=when,
        timeout=timeout,
        retry=retry,
        continue_on_error=continue_on_error,
        on_failure=on_failure,
        ensure=ensure,
        depends_on=frozenset(refs.depends),
    )


def build_steps(drafts: list[StepDraft], ctx: BuildContext) -> tuple[Step, ...]:
    """Build a sequence of steps; each sees the names of everything before it."""
    steps: list[Step] = []
    added: list[str] = []
    for draft in drafts:
        steps.append(build_step(draft, ctx))
        added += _reveal(draft.everything(), ctx)
    ctx.visible.difference_update(added)
    return tuple(steps)


__all__ = ["BuildContext", "build_step", "build_steps"]
