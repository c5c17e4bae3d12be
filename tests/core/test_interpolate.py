"""``${{ ... }}`` parsing and run-time substitution."""

from __future__ import annotations

import re
from typing import Any

import pytest

from wfe_core.interpolate import (
    InterpolationError,
    Reference,
    interpolate,
    parse_path,
    references,
    resolve,
    scan,
)

INPUTS: dict[str, Any] = {"tag": "v1", "count": 3, "flag": True, "none": None, "list": [1, "a"]}
OUTPUTS: dict[str, dict[str, Any]] = {
    "build": {"digest": "sha256:abc", "tags": ["a", "b"], "meta": {"k": "v"}, "exit_code": 0}
}
ENV = {"HOME": "/root"}


def sub(data: Any) -> Any:
    return interpolate(data, inputs=INPUTS, outputs=OUTPUTS, env=ENV)


def test_references_with_offsets() -> None:
    text = "a ${{ inputs.tag }} b ${{steps.build.outputs.digest}} ${{ env.HOME }}"
    refs = references(text)
    assert [(r.root, r.name, r.key) for r in refs] == [
        ("inputs", "tag", None),
        ("steps", "build", "digest"),
        ("env", "HOME", None),
    ]
    assert text[refs[0].start : refs[0].end] == "${{ inputs.tag }}"
    assert refs[1].text == "${{steps.build.outputs.digest}}"
    assert refs[1].path == "steps.build.outputs.digest"


def test_no_references() -> None:
    assert references("plain text with $HOME and {{ braces }}") == []
    assert scan("$${{ escaped }}") == ([], [])


def test_parse_path() -> None:
    assert parse_path("steps.b.outputs.tags.0") == Reference(
        "steps", "b", "tags", ("0",), text="steps.b.outputs.tags.0"
    )
    assert parse_path(" inputs.x ").path == "inputs.x"
    with pytest.raises(InterpolationError, match=r"write steps\.STEP\.outputs\.KEY"):
        parse_path("steps.b.digest")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{ inputs.tag", "unterminated"),
        ("${{ ${{ inputs.tag }}", "inside another"),
        ("${{ }}", "empty expression"),
        ("${{ inputs.a + 1 }}", "no operators or function calls"),
        ("${{ format('x') }}", "no operators or function calls"),
        ("${{ github.sha }}", "unknown expression root 'github'"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    refs, problems = scan(text)
    assert refs == []
    assert message in problems[0].message
    with pytest.raises(InterpolationError, match=re.escape(message)):
        references(text)


def test_values_become_text() -> None:
    assert sub("${{ inputs.tag }}") == "v1"
    assert sub("${{ inputs.count }}") == "3"
    assert sub("${{ inputs.flag }}") == "true"
    assert sub("${{ inputs.none }}") == ""
    assert sub("${{ inputs.list }}") == '[1,"a"]'
    assert sub("${{ steps.build.outputs.meta }}") == '{"k":"v"}'
    assert sub("${{ steps.build.outputs.exit_code }}") == "0"
    assert sub("x=${{ steps.build.outputs.tags.1 }}") == "x=b"
    assert sub("${{ steps.build.outputs.meta.k }}:${{ env.HOME }}") == "v:/root"


def test_nested_structures_and_escapes() -> None:
    data = {
        "run": "echo ${{ inputs.tag }} $${{ literal }}",
        "list": ["${{ inputs.count }}", 5, None, {"deep": "${{ env.HOME }}"}],
        "${{ inputs.tag }}": "keys are not interpolated",
    }
    assert sub(data) == {
        "run": "echo v1 ${{ literal }}",
        "list": ["3", 5, None, {"deep": "/root"}],
        "${{ inputs.tag }}": "keys are not interpolated",
    }
    assert data["run"] == "echo ${{ inputs.tag }} $${{ literal }}"  # the input is not changed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{ inputs.missing }}", "input 'missing' has no value"),
        ("${{ env.NOPE }}", "environment variable 'NOPE' is not set"),
        ("${{ steps.skipped.outputs.x }}", "step 'skipped' has no outputs"),
        ("${{ steps.build.outputs.nope }}", "step 'build' has no output 'nope' (its outputs: "),
        ("${{ steps.build.outputs.tags.9 }}", "'9' not found"),
    ],
)
def test_unknown_at_run_time(text: str, message: str) -> None:
    with pytest.raises(InterpolationError) as failed:
        sub(text)
    assert message in str(failed.value)


def test_resolve_keeps_types() -> None:
    ref = parse_path("steps.build.outputs.tags")
    assert resolve(ref, inputs=INPUTS, outputs=OUTPUTS, env=ENV) == ["a", "b"]
