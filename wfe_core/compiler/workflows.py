"""The top of a workflow file: ``workflow:`` or ``workflows:``, each workflow's keys and inputs,
and the file-wide step name table."""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from wfe_core.compiler import codes
from wfe_core.compiler.nodes import Map, Node, Scalar, Span, kind_of_value, to_plain
from wfe_core.compiler.references import StepInfo
from wfe_core.compiler.report import Reporter
from wfe_core.compiler.shapes import check_keys, expect_bool, expect_map, expect_seq, expect_str
from wfe_core.compiler.step_build import BuildContext, build_steps
from wfe_core.compiler.step_syntax import StepDraft, parse_step
from wfe_core.compiler.suggest import listing, one_of
from wfe_core.model import InputSpec, Location, Workflow
from wfe_core.plugins import PluginRegistry

TOP_KEYS = ("workflow", "workflows")
WORKFLOW_KEYS = ("id", "version", "description", "inputs", "steps")
INPUT_KEYS = ("type", "default", "required", "description")
INPUT_TYPES = ("string", "number", "integer", "boolean")
ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
EXTENSION_PREFIX = "x-"
"""Top-level keys starting with this are ignored: a place to hold YAML anchors."""


def _fits(value: object, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _input(name: str, span: Span, node: Node, report: Reporter) -> InputSpec | None:
    if not INPUT_NAME.match(name):
        report.error(
            codes.INPUT,
            f"invalid input name {name!r}: use letters, digits, '_' and "
            "'-', starting with a letter or '_'",
            span,
        )
        return None
    if isinstance(node, Scalar) and isinstance(node.value, str):  # shorthand `tag: string`
        spec: dict[str, Node] = {"type": node}
    elif isinstance(node, Scalar) and node.value is None:
        spec = {}
    else:
        mapping = expect_map(node, f"input {name!r}", report)
        if mapping is None:
            return None
        check_keys(mapping, INPUT_KEYS, f"input {name!r}", report)
        spec = {e.key: e.value for e in mapping.entries}
    type_name = "string"
    if "type" in spec:
        given = expect_str(spec["type"], f"the type of input {name!r}", report)
        if given is None:
            return None
        if given not in INPUT_TYPES:
            report.error(
                codes.INPUT,
                f"input {name!r} has unknown type {given!r}; use {one_of(INPUT_TYPES)}",
                spec["type"],
            )
            return None
        type_name = given
    required = False
    if "required" in spec:
        required = bool(expect_bool(spec["required"], f"'required' of input {name!r}", report))
    description = ""
    if "description" in spec:
        description = expect_str(spec["description"], "'description'", report) or ""
    default = to_plain(spec["default"]) if "default" in spec else None
    if default is not None and not _default_fits(
        name, type_name, required, default, spec["default"], report
    ):
        return None
    return InputSpec(name, type_name, default, required, description)


def _default_fits(
    name: str, type_name: str, required: bool, default: object, node: Node, report: Reporter
) -> bool:
    """Whether an input's (non-null) default has the input's type; warns when it is useless."""
    if not _fits(default, type_name):
        article = "an" if type_name == "integer" else "a"
        quotable = type_name == "string" and not isinstance(default, list | dict)
        report.error(
            codes.INPUT,
            f"default of input {name!r} must be {article} {type_name}, "
            f"got {kind_of_value(default)}",
            node,
            hint="quote it" if quotable else None,
        )
        return False
    if required:
        report.warning(
            codes.INPUT, f"input {name!r} is required, so its default is never used", node
        )
    return True


def _inputs(node: Node | None, report: Reporter) -> tuple[InputSpec, ...]:
    if node is None:
        return ()
    if isinstance(node, Scalar) and node.value is None:
        return ()
    mapping = expect_map(node, "'inputs'", report)
    if mapping is None:
        return ()
    specs = (_input(e.key, e.key_span, e.value, report) for e in mapping.entries)
    return tuple(s for s in specs if s is not None)


@attrs.frozen
class _Parsed:
    """A workflow mapping after the first pass: its header values and step drafts."""

    mapping: Map
    id: str
    drafts: list[StepDraft]
    inputs: tuple[InputSpec, ...]
    description: str


def _parse_workflow(node: Node, report: Reporter) -> _Parsed | None:
    mapping = expect_map(node, "a workflow", report)
    if mapping is None:
        return None
    check_keys(mapping, WORKFLOW_KEYS, "a workflow", report, required=("id", "steps"))
    id_entry, version_entry = mapping.get("id"), mapping.get("version")
    wid = _workflow_id(id_entry.value, report) if id_entry is not None else ""
    if version_entry is not None:
        _check_version(version_entry.value, report)
    description = ""
    if (entry := mapping.get("description")) is not None:
        description = expect_str(entry.value, "'description'", report) or ""
    inputs_entry = mapping.get("inputs")
    inputs = _inputs(inputs_entry.value if inputs_entry else None, report)
    steps_entry = mapping.get("steps")
    drafts = _drafts(steps_entry.value, report) if steps_entry is not None else []
    return _Parsed(mapping, wid, drafts, inputs, description)


def _workflow_id(node: Node, report: Reporter) -> str:
    """The workflow's ``id`` (a bare number is taken as its text), or "" after an error."""
    text = node.value if isinstance(node, Scalar) else None
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if isinstance(text, str) and ID_PATTERN.match(text):
        return text
    report.error(
        codes.WORKFLOW_ID,
        "workflow 'id' must be a string of letters, digits, '_', '.' and '-'",
        node,
    )
    return ""


def _check_version(node: Node, report: Reporter) -> None:
    """Only format version 1 exists (``1``, not ``1.0`` or ``true``)."""
    if isinstance(node, Scalar) and node.value == 1 and not isinstance(node.value, bool | float):
        return
    shown = node.value if isinstance(node, Scalar) else "a collection"
    report.error(
        codes.VERSION,
        f"unsupported workflow format version {shown!r}; this wfe reads version 1",
        node,
    )


def _drafts(node: Node, report: Reporter) -> list[StepDraft]:
    """First-pass drafts of the ``steps:`` list (at least one step is required)."""
    items = expect_seq(node, "'steps'", report)
    if items is None:
        return []
    if not items.items:
        report.error(codes.EMPTY_STEPS, "a workflow needs at least one step", items)
    drafts = (parse_step(item, report) for item in items.items)
    return [draft for draft in drafts if draft is not None]


def _workflow_nodes(root: Node, report: Reporter) -> list[Node]:
    mapping = expect_map(root, "the top level of a workflow file", report)
    if mapping is None:
        return []
    check_keys(mapping, TOP_KEYS, "the top level", report, extension_prefix=EXTENSION_PREFIX)
    single, several = mapping.get("workflow"), mapping.get("workflows")
    if single is not None and several is not None:
        report.error(
            codes.TOP_LEVEL, "use either 'workflow' or 'workflows', not both", several.key_span
        )
        return []
    if single is not None:
        return [single.value]
    if several is not None:
        items = expect_seq(several.value, "'workflows'", report)
        if items is not None and not items.items:
            report.error(codes.TOP_LEVEL, "'workflows' needs at least one workflow", items)
        return list(items.items) if items is not None else []
    report.error(
        codes.TOP_LEVEL,
        "a workflow file needs a 'workflow' (one) or 'workflows' (a list) key",
        mapping,
    )
    return []


def _step_table(parsed: list[_Parsed], report: Reporter) -> dict[str, StepInfo]:
    table: dict[str, StepInfo] = {}
    order = 0
    for workflow in parsed:
        work: list[tuple[StepDraft, str | None]] = [(d, None) for d in reversed(workflow.drafts)]
        while work:
            draft, block = work.pop()
            order += 1
            if draft.name:
                first = table.get(draft.name)
                if first is not None:
                    report.error(
                        codes.DUPLICATE_STEP,
                        f"duplicate step name {draft.name!r} "
                        f"(first used at line {first.span.line}); step names must be "
                        "unique in the file",
                        draft.name_span,
                    )
                else:
                    table[draft.name] = StepInfo(
                        workflow.id, order, block, draft.name_span, draft.parallel_entry is not None
                    )
            hooks = [(h, None) for h in (draft.on_failure, draft.ensure) if h is not None]
            children = [(c, draft.name or None) for c in draft.parallel]
            work.extend(reversed([*children, *hooks]))
    return table


def compile_document(
    root: Node, report: Reporter, registry: PluginRegistry, source: str, base_dir: Path
) -> list[Workflow]:
    """Every workflow of the file (possibly partial when there are errors)."""
    parsed = [
        p
        for p in (_parse_workflow(n, report) for n in _workflow_nodes(root, report))
        if p is not None
    ]
    seen: dict[str, Map] = {}
    for workflow in parsed:
        if workflow.id and workflow.id in seen:
            report.error(
                codes.WORKFLOW_ID,
                f"duplicate workflow id {workflow.id!r} (first "
                f"used at line {seen[workflow.id].span.line})",
                workflow.mapping.index["id"].value,
            )
        seen.setdefault(workflow.id, workflow.mapping)
    table = _step_table(parsed, report)
    workflows: list[Workflow] = []
    for workflow in parsed:
        ctx = BuildContext(
            report=report,
            registry=registry,
            source=source,
            base_dir=base_dir,
            workflow_id=workflow.id,
            inputs=frozenset(i.name for i in workflow.inputs),
            inputs_text=listing(i.name for i in workflow.inputs),
            steps=table,
        )
        steps = build_steps(workflow.drafts, ctx)
        span = workflow.mapping.span
        workflows.append(
            Workflow(
                id=workflow.id,
                location=Location(report.file, span.line, span.column),
                steps=steps,
                version=1,  # the only format version; anything else was reported
                inputs=workflow.inputs,
                description=workflow.description,
            )
        )
    return workflows


__all__ = ["compile_document"]
