"""JSON Schema generation: valid draft 2020-12, accepts valid files, rejects broken ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from wfe_core.contracts import ExecutorPlugin
from wfe_core.plugins import PluginRegistry
from wfe_core.schema import DRAFT, executor_schema, workflow_schema

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import fake_plugins  # type: ignore[import-not-found]  # noqa: E402


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    built = workflow_schema(fake_plugins.registry())
    jsonschema.Draft202012Validator.check_schema(built)
    return built


def valid(schema: dict[str, Any], text: str) -> bool:
    return bool(jsonschema.Draft202012Validator(schema).is_valid(yaml.safe_load(text)))


def test_executor_schema_from_attrs() -> None:
    schema = executor_schema(fake_plugins.RUN)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT
    assert schema["title"] == "config of a 'run' step"
    assert schema["description"] == "runs things (fake)"
    assert schema["required"] == ["run"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["run"] == {"type": "string", "description": "command line"}
    assert props["retries"]["default"] == 0
    assert {"type": "integer"} in props["retries"]["anyOf"]
    assert {"enum": ["fast", "slow"]} in props["mode"]["anyOf"]
    assert props["network"]["default"] == "none"
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "default": []}
    assert props["env"]["additionalProperties"] == {"type": "string"}
    assert props["mounts"]["items"] == {"$ref": "#/$defs/Mount"}
    assert props["workdir"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    mount = schema["$defs"]["Mount"]
    assert mount["required"] == ["source", "target"]
    assert mount["properties"]["source"]["description"] == "host path"
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"run": "x", "retries": "${{ inputs.n }}", "mode": "slow"})
    assert not validator.is_valid({"run": "x", "mode": "medium"})
    assert not validator.is_valid({"rn": "x"})


def test_design_example_is_valid(schema: dict[str, Any]) -> None:
    assert valid(schema, (FIXTURES / "design_example.yaml").read_text())


@pytest.mark.parametrize(
    "text",
    [
        "workflow: {id: x, steps: [{name: a, type: run, config: {rn: x}}]}",
        "workflow: {id: x, steps: [{name: a, type: nope}]}",
        "workflow: {id: x, steps: [{name: a, type: run, parallel: [{name: b, type: noop}]}]}",
        "workflow: {id: x, steps: [{name: a}]}",
        "workflow: {id: x, steps: [{type: noop}]}",
        "workflow: {id: x, steps: [{name: a, type: noop, tiemout: 5s}]}",
        "workflow: {id: x, steps: [{name: a, type: noop, timeout: soon}]}",
        "workflow: {id: x, steps: [{name: a, type: noop, when: {field: inputs.a}}]}",
        "workflow: {id: x, steps: [{name: a, type: noop, when: {all: []}}]}",
        "workflow: {id: x, version: 2, steps: [{name: a, type: noop}]}",
        "workflow: {id: x, steps: []}",
        "workflows: []",
        "other: 1",
    ],
)
def test_invalid_files_are_rejected(schema: dict[str, Any], text: str) -> None:
    assert not valid(schema, text)


def test_valid_variants(schema: dict[str, Any]) -> None:
    text = """
x-anchors: {a: 1}
workflows:
  - id: one
    inputs: {tag: string, n: {type: integer, default: 3}}
    steps:
      - name: a
        type: run
        config: {run: make, verbose: "${{ inputs.tag }}"}
        retry: {max_attempts: 3, interval: 1s, backoff: 2}
        timeout: 90
        when: {not: {any: [{field: inputs.tag, equals: x}, {field: env.CI, is_null: true}]}}
        on_failure: {type: noop}
        ensure: {name: cleanup, type: noop}
"""
    assert valid(schema, text)


def test_schema_for_the_installed_registry() -> None:
    built = workflow_schema(PluginRegistry())
    jsonschema.Draft202012Validator.check_schema(built)
    assert "step_body" in built["$defs"]


@attrs.frozen
class Tree:
    """A recursive config class."""

    name: str
    children: list[Tree] = attrs.field(factory=list)
    pair: tuple[int, str] | None = None


def test_recursive_and_tuple_fields() -> None:
    plugin = ExecutorPlugin("tree", Tree, lambda c: fake_plugins._Noop())
    schema = executor_schema(plugin)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["children"]["items"] == {"$ref": "#"}
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"name": "a", "children": [{"name": "b"}], "pair": [1, "x"]})
    assert not validator.is_valid({"name": "a", "children": [{"name": 1}]})
    assert not validator.is_valid({"name": "a", "pair": [1, "x", 2]})
    whole = workflow_schema(PluginRegistry([plugin], discover=False))
    assert whole["$defs"]["config.tree.Tree"]["properties"]["children"]["items"] == {
        "$ref": "#/$defs/config.tree.Tree"
    }


def test_kitchen_sink_is_valid(schema: dict[str, Any]) -> None:
    assert valid(schema, (FIXTURES / "kitchen_sink.yaml").read_text())


def test_shell_timeout_accepts_duration_syntax() -> None:
    import jsonschema

    from wfe_core.executors.shell import plugin as shell_plugin
    from wfe_core.schema import executor_schema

    schema = executor_schema(shell_plugin)
    jsonschema.validate({"run": "true", "timeout": "1m30s"}, schema)
    jsonschema.validate({"run": "true", "timeout": 5}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"run": "true", "timeout": "soon"}, schema)


def test_schema_knows_exactly_the_keys_the_compiler_accepts(schema: dict[str, Any]) -> None:
    """The schema spells the keys out again; this keeps it from drifting from the compiler
    (editors would flag a valid file, or miss a typo)."""
    from wfe_core.compiler.step_build import RETRY_KEYS
    from wfe_core.compiler.step_syntax import STEP_KEYS
    from wfe_core.compiler.workflows import INPUT_KEYS, TOP_KEYS, WORKFLOW_KEYS

    defs = schema["$defs"]
    assert set(schema["properties"]) == set(TOP_KEYS)
    assert set(defs["workflow"]["properties"]) == set(WORKFLOW_KEYS)
    assert set(defs["input"]["anyOf"][2]["properties"]) == set(INPUT_KEYS)
    assert set(defs["step_body"]["properties"]) == set(STEP_KEYS)
    assert set(defs["retry"]["properties"]) == set(RETRY_KEYS)
