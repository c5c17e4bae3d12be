"""Rendering a compiled workflow as a Mermaid flowchart or a Graphviz DOT digraph (``wfe graph``).

Steps are boxes labelled with their name, type and ``when`` condition; a parallel block is a
subgraph (a DOT cluster) whose children all follow the step before the block and all precede the
step after it. ``on_failure`` and ``ensure`` steps hang off their step with dashed, labelled
edges. Node ids are generated (``n1``, ``n2``, ...), so step names never need escaping as ids;
labels are escaped for each format. The output is deterministic.
"""

from __future__ import annotations

import json
from typing import Literal

import attrs

from wfe_core.model import Compare, Condition, Not, Step, Workflow

Format = Literal["mermaid", "dot"]
_MAX_CONDITION = 60


def describe_condition(condition: Condition) -> str:
    """A short human-readable form of a ``when`` condition."""
    if isinstance(condition, Compare):
        if condition.op in ("is_null", "is_not_null"):
            return f"{condition.field} {condition.op}"
        value = json.dumps(condition.value, ensure_ascii=False)
        return f"{condition.field} {condition.op} {value}"
    if isinstance(condition, Not):
        return f"not ({describe_condition(condition.condition)})"
    inner = ", ".join(describe_condition(c) for c in condition.conditions)
    return f"{condition.op}({inner})"


def _label_lines(step: Step) -> list[str]:
    lines = [step.name]
    lines.append("parallel" if step.is_parallel else f"type: {step.type}")
    if step.when is not None:
        text = describe_condition(step.when)
        if len(text) > _MAX_CONDITION:
            text = text[: _MAX_CONDITION - 3] + "..."
        lines.append(f"when {text}")
    return lines


@attrs.define
class _Graph:
    """Format-independent graph being assembled: nodes, clusters and edges in order."""

    lines: list[str] = attrs.Factory(list)
    edges: list[tuple[str, str, str | None, str | None]] = attrs.Factory(list)
    counter: int = 0

    def new_id(self) -> str:
        self.counter += 1
        return f"n{self.counter}"


class _Renderer:
    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self.graph = _Graph()

    # -- labels -------------------------------------------------------------------------------

    def label(self, lines: list[str]) -> str:
        if self.fmt == "mermaid":
            escaped = [
                line.replace("&", "#amp;")
                .replace('"', "#quot;")
                .replace("<", "#lt;")
                .replace(">", "#gt;")
                for line in lines
            ]
            return '"' + "<br/>".join(escaped) + '"'
        escaped = [line.replace("\\", "\\\\").replace('"', '\\"') for line in lines]
        return '"' + "\\n".join(escaped) + '"'

    # -- structure ----------------------------------------------------------------------------

    def step(self, step: Step, indent: str) -> tuple[list[str], list[str], str]:
        """Emit a step; return its entry node ids, exit node ids, and an id to hang hooks on."""
        out = self.graph.lines
        if not step.is_parallel or not step.parallel:
            node = self.graph.new_id()
            if self.fmt == "mermaid":
                out.append(f"{indent}{node}[{self.label(_label_lines(step))}]")
            else:
                out.append(f"{indent}{node} [label={self.label(_label_lines(step))}];")
            entries, exits, anchor, tail = [node], [node], node, None
        else:
            cluster = self.graph.new_id()
            if self.fmt == "mermaid":
                out.append(f"{indent}subgraph {cluster} [{self.label(_label_lines(step))}]")
                out.append(f"{indent}  direction TB")
            else:
                out.append(f"{indent}subgraph cluster_{cluster} {{")
                out.append(f"{indent}  label={self.label(_label_lines(step))};")
                out.append(f"{indent}  style=dashed;")
            entries, exits = [], []
            for child in step.parallel:
                child_entries, child_exits, _ = self.step(child, indent + "  ")
                entries.extend(child_entries)
                exits.extend(child_exits)
            out.append(f"{indent}end" if self.fmt == "mermaid" else f"{indent}}}")
            # Mermaid links subgraphs directly; DOT links a member node, clipped at the cluster
            anchor = cluster if self.fmt == "mermaid" else exits[0]
            tail = None if self.fmt == "mermaid" else f"cluster_{cluster}"
        for hook, text in ((step.on_failure, "on failure"), (step.ensure, "ensure")):
            if hook is not None:
                hook_entries, _, _ = self.step(hook, indent)
                for target in hook_entries:
                    self.graph.edges.append((anchor, target, text, tail))
        return entries, exits, anchor

    def sequence(self, steps: tuple[Step, ...]) -> None:
        previous: list[str] = []
        for step in steps:
            entries, exits, _ = self.step(step, "  ")
            for source in previous:
                for target in entries:
                    self.graph.edges.append((source, target, None, None))
            previous = exits

    def render(self, workflow: Workflow) -> str:
        self.sequence(workflow.steps)
        lines: list[str] = []
        if self.fmt == "mermaid":
            lines.append("flowchart TD")
            lines.append(f"  %% workflow {workflow.id}")
            lines.extend(self.graph.lines)
            for source, target, text, _tail in self.graph.edges:
                if text is None:
                    lines.append(f"  {source} --> {target}")
                else:
                    lines.append(f"  {source} -. {text} .-> {target}")
        else:
            lines.append(f"digraph {json.dumps(workflow.id)} {{")
            lines.append("  compound=true;")
            lines.append("  rankdir=TB;")
            lines.append("  node [shape=box];")
            lines.extend(self.graph.lines)
            for source, target, text, tail in self.graph.edges:
                if text is None:
                    lines.append(f"  {source} -> {target};")
                else:
                    clip = f", ltail={tail}" if tail else ""
                    lines.append(
                        f"  {source} -> {target} [style=dashed, label={self.label([text])}{clip}];"
                    )
            lines.append("}")
        return "\n".join(lines) + "\n"


def render_graph(workflow: Workflow, fmt: Format = "mermaid") -> str:
    """The workflow as Mermaid (``flowchart TD``) or DOT text."""
    if fmt not in ("mermaid", "dot"):
        raise ValueError(f"unknown graph format {fmt!r}; use 'mermaid' or 'dot'")
    return _Renderer(fmt).render(workflow)


__all__ = ["Format", "describe_condition", "render_graph"]
