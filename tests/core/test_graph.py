"""Mermaid and DOT rendering of compiled workflows."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wfe_core.compiler import compile_text
from wfe_core.graph import describe_condition, render_graph
from wfe_core.model import Combine, Compare, Not, Workflow

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import fake_plugins  # type: ignore[import-not-found]  # noqa: E402

HOOKS = """
workflow:
  id: hooks
  steps:
    - name: build
      type: run
      config: {run: make}
      on_failure: {name: notify, type: noop}
      ensure: {name: cleanup, type: noop}
    - name: block
      parallel:
        - {name: a, type: noop}
        - name: inner
          parallel: [{name: b, type: noop}, {name: c, type: noop}]
      ensure: {type: noop}
    - name: 'last'
      type: run
      when: {field: steps.a.outputs.msg, equals: 'say "hi" <b>'}
      config: {run: x}
"""


def compile_(text: str) -> Workflow:
    result = compile_text(text, file="g.yaml", registry=fake_plugins.registry(), base_dir=FIXTURES)
    return result.select(None)


def test_design_example_mermaid() -> None:
    workflow = compile_((FIXTURES / "design_example.yaml").read_text())
    assert render_graph(workflow) == (FIXTURES / "design_example.mmd").read_text()


def test_design_example_dot() -> None:
    workflow = compile_((FIXTURES / "design_example.yaml").read_text())
    assert render_graph(workflow, "dot") == (FIXTURES / "design_example.dot").read_text()


def test_hooks_nested_parallel_and_escaping_mermaid() -> None:
    text = render_graph(compile_(HOOKS))
    labels = dict(re.findall(r'^\s*(n\d+)\["([^"]*)"\]', text, re.M))
    ids = {label.split("<br/>")[0]: node for node, label in labels.items()}
    assert set(ids) == {"build", "notify", "cleanup", "a", "b", "c", "block-ensure", "last"}
    assert f"{ids['build']} -. on failure .-> {ids['notify']}" in text
    assert f"{ids['build']} -. ensure .-> {ids['cleanup']}" in text
    assert f"{ids['build']} --> {ids['a']}" in text
    assert f"{ids['build']} --> {ids['b']}" in text
    assert f"{ids['c']} --> {ids['last']}" in text
    assert f"{ids['notify']} -->" not in text  # hooks are not in the main flow
    assert re.search(r"n\d+ -\. ensure \.-> " + ids["block-ensure"], text)
    assert "equals #quot;say \\#quot;hi\\#quot; #lt;b#gt;#quot;" in labels[ids["last"]]
    assert text.count("subgraph") == 2 and text.count("\n  end") == 1


def test_hooks_nested_parallel_and_escaping_dot() -> None:
    text = render_graph(compile_(HOOKS), "dot")
    assert text.startswith('digraph "hooks" {')
    shown = json.dumps('say "hi" <b>').replace("\\", "\\\\").replace('"', '\\"')
    assert f"equals {shown}" in text
    assert "ltail=cluster_" in text
    assert text.count("subgraph cluster_") == 2
    assert text.count("{") == text.count("}")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_dot_output_is_accepted_by_graphviz() -> None:
    text = render_graph(compile_(HOOKS), "dot")
    subprocess.run(["dot", "-Tsvg"], input=text, text=True, check=True, capture_output=True)


def test_describe_condition() -> None:
    condition = Combine("all", (Compare("inputs.a", "gt", 1), Not(Compare("env.X", "is_null"))))
    assert describe_condition(condition) == "all(inputs.a gt 1, not (env.X is_null))"


def test_unknown_format() -> None:
    workflow = compile_((FIXTURES / "design_example.yaml").read_text())
    with pytest.raises(ValueError, match="unknown graph format"):
        render_graph(workflow, "svg")  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "suffix"), [("mermaid", "mmd"), ("dot", "dot")])
def test_kitchen_sink_snapshots(fmt: str, suffix: str) -> None:
    result = compile_text(
        (FIXTURES / "kitchen_sink.yaml").read_text(),
        file="k.yaml",
        registry=fake_plugins.registry(),
        base_dir=FIXTURES,
    )
    text = render_graph(result.select("sink"), fmt)  # type: ignore[arg-type]
    assert text == (FIXTURES / f"kitchen_sink.{suffix}").read_text()
