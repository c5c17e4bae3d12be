"""First pass over steps: their keys and names, before anything is checked across steps.

A :class:`StepDraft` is a step mapping split into its parts (still tree nodes). Drafts exist so
that every step name in the file is known before references are checked: a reference to a step
defined further down is then reported as "runs after", not as "unknown step".
"""

from __future__ import annotations

import re

import attrs

from wfe_core.compiler import codes
from wfe_core.compiler.nodes import Entry, Map, Node, Span
from wfe_core.compiler.report import Reporter
from wfe_core.compiler.shapes import check_keys, expect_map, expect_seq, expect_str

STEP_KEYS = (
    "name",
    "type",
    "config",
    "parallel",
    "when",
    "timeout",
    "retry",
    "continue_on_error",
    "on_failure",
    "ensure",
)
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
HOOKS = ("on_failure", "ensure")


@attrs.frozen
class StepDraft:
    """One step's parts; ``name`` is empty when the step has no usable name."""

    name: str
    name_span: Span
    node: Map
    type: Entry | None = None
    config: Entry | None = None
    parallel: tuple[StepDraft, ...] = ()
    parallel_entry: Entry | None = None
    when: Entry | None = None
    timeout: Entry | None = None
    retry: Entry | None = None
    continue_on_error: Entry | None = None
    on_failure: StepDraft | None = None
    ensure: StepDraft | None = None

    def step_and_block(self) -> list[StepDraft]:
        """This step and everything in its parallel block (hooks of those included), but not
        this step's own hooks: what has finished when this step's hooks start."""
        found = [self]
        for child in self.parallel:
            found.extend(child.everything())
        return found

    def everything(self) -> list[StepDraft]:
        """This step, its parallel block and all hooks, recursively, in execution order."""
        found: list[StepDraft] = []
        work = [self]
        while work:
            draft = work.pop()
            found.append(draft)
            hooks = [h for h in (draft.on_failure, draft.ensure) if h is not None]
            work.extend(reversed([*draft.parallel, *hooks]))
        return found


def _name(mapping: Map, default: str | None, report: Reporter) -> tuple[str, Span]:
    entry = mapping.get("name")
    if entry is None:
        if default is not None:
            return default, mapping.span
        report.error(codes.MISSING_KEY, "step is missing the required key 'name'", mapping)
        return "", mapping.span
    name = expect_str(entry.value, "step 'name'", report)
    if name is None:
        return "", entry.value.span
    if not NAME_PATTERN.match(name):
        report.error(
            codes.STEP_NAME,
            f"invalid step name {name!r}: use letters, digits, '_' and '-', "
            "starting with a letter or '_'",
            entry.value,
        )
        return "", entry.value.span
    return name, entry.value.span


def parse_step(node: Node, report: Reporter, default_name: str | None = None) -> StepDraft | None:
    """Split one step mapping into a draft, reporting key-level problems."""
    mapping = expect_map(node, "a step", report)
    if mapping is None:
        return None
    name, name_span = _name(mapping, default_name, report)
    check_keys(mapping, STEP_KEYS, f"step {name!r}" if name else "step", report)
    parallel: list[StepDraft] = []
    parallel_entry = mapping.get("parallel")
    if parallel_entry is not None:
        items = expect_seq(parallel_entry.value, "'parallel'", report)
        if items is not None:
            if not items.items:
                report.error(
                    codes.EMPTY_STEPS, "'parallel' needs at least one step", parallel_entry.value
                )
            for item in items.items:
                child = parse_step(item, report)
                if child is not None:
                    parallel.append(child)
    hooks: dict[str, StepDraft | None] = {}
    for hook in HOOKS:
        entry = mapping.get(hook)
        hooks[hook] = (
            parse_step(entry.value, report, f"{name}-{hook}" if name else None)
            if entry is not None
            else None
        )
    return StepDraft(
        name=name,
        name_span=name_span,
        node=mapping,
        type=mapping.get("type"),
        config=mapping.get("config"),
        parallel=tuple(parallel),
        parallel_entry=parallel_entry,
        when=mapping.get("when"),
        timeout=mapping.get("timeout"),
        retry=mapping.get("retry"),
        continue_on_error=mapping.get("continue_on_error"),
        on_failure=hooks["on_failure"],
        ensure=hooks["ensure"],
    )


__all__ = ["NAME_PATTERN", "STEP_KEYS", "StepDraft", "parse_step"]
