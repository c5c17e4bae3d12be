"""Hostile and broken input: every case ends in a diagnostic, never a hang, crash or traceback."""

from __future__ import annotations

import copy
import random
import sys
import time
from pathlib import Path

import pytest
import yaml

from wfe_core.compiler import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    CompileResult,
    compile_file,
    compile_text,
    yaml_loader,
)
from wfe_core.contracts import Diagnostic

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import fake_plugins  # type: ignore[import-not-found]  # noqa: E402

VALID = (FIXTURES / "design_example.yaml").read_bytes()


@pytest.fixture(autouse=True, params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every hostile case runs against both PyYAML parsers (libyaml may be missing)."""
    if request.param == "python":
        monkeypatch.setattr(yaml_loader, "_Parser", yaml.BaseLoader)
    elif not hasattr(yaml, "CBaseLoader"):
        pytest.skip("PyYAML was built without libyaml")
    return str(request.param)


def run(text: str | bytes) -> CompileResult:
    return compile_text(text, file="h.yaml", registry=fake_plugins.registry(), base_dir=FIXTURES)


def single(text: str | bytes) -> Diagnostic:
    result = run(text)
    assert not result.ok and result.workflows == ()
    assert len(result.diagnostics) == 1, [str(d) for d in result.diagnostics]
    return result.diagnostics[0]


def test_billion_laughs_is_rejected_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    started = time.monotonic()
    diag = single("\n".join(lines) + "\n")
    assert time.monotonic() - started < 2
    assert diag.code == "WFE007"
    assert f"more than {MAX_NODES} YAML nodes, the limit" in diag.message
    assert diag.hint is not None and "alias bomb" in diag.hint


def test_too_many_aliases() -> None:
    text = "x-a: &a 1\nx-b: [" + ", ".join(["*a"] * 1500) + "]\n"
    diag = single(text)
    assert diag.code == "WFE007" and "too many aliases" in diag.message


def test_reasonable_aliases_and_merge_keys_work() -> None:
    text = """
x-defaults: &defaults {type: run, timeout: 5s}
workflow:
  id: wf
  steps:
    - <<: *defaults
      name: a
      config: {run: make}
    - <<: *defaults
      name: b
      timeout: 1s
      config: {run: make}
"""
    result = run(text)
    assert result.ok, [str(d) for d in result.diagnostics]
    a, b = result.select(None).steps
    assert (a.type, a.timeout, b.timeout) == ("run", 5.0, 1.0)


def test_recursive_alias() -> None:
    diag = single("a: &x [1, *x]\n")
    assert diag.code == "WFE004" and "refers to a node that contains it" in diag.message


def test_undefined_alias() -> None:
    result = run("x-a: *nope\n")
    (diag,) = [d for d in result.diagnostics if d.code == "WFE004"]
    assert diag.message == "alias *nope names no anchor defined before it"
    assert (diag.line, diag.column) == (1, 6)


def test_oversized_bytes_and_text(tmp_path: Path) -> None:
    big = b"# " + b"x" * MAX_FILE_BYTES + b"\n"
    diag = single(big)
    assert diag.code == "WFE002"
    assert f"larger than {MAX_FILE_BYTES} bytes" in diag.message
    assert single(big.decode()).code == "WFE002"
    path = tmp_path / "big.yaml"
    path.write_bytes(big * 3)
    result = compile_file(path, fake_plugins.registry())
    assert [d.code for d in result.diagnostics] == ["WFE002"]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_flow_nesting(depth: int) -> None:
    diag = single("a: " + "[" * depth + "]" * depth + "\n")
    assert diag.code == "WFE006"
    assert f"at most {MAX_DEPTH} levels" in diag.message


def test_deep_block_nesting() -> None:
    lines = [" " * i + f"k{i}:" for i in range(200)]
    diag = single("\n".join(lines) + " 1\n")
    assert diag.code == "WFE006"
    assert diag.line == MAX_DEPTH + 1  # where the first level too many starts


def test_nesting_just_under_the_cap_is_fine() -> None:
    depth = MAX_DEPTH - 6  # leaves room for workflow/steps/step/config levels
    value = "[" * depth + "]" * depth
    text = (
        "workflow:\n  id: wf\n  steps:\n"
        f"    - {{name: a, type: run, config: {{run: x, env: {{A: {value}}}}}}}\n"
    )
    result = run(text)
    assert [d.code for d in result.diagnostics] == ["WFE050"]  # a list is not a string


def test_duplicate_keys_are_reported_with_both_lines() -> None:
    text = "workflow:\n  id: a\n  id: b\n  steps: [{name: s, type: noop, name: t}]\n"
    got = [(d.code, d.line, d.message) for d in run(text).diagnostics]
    assert got == [
        ("WFE008", 3, "duplicate key 'id' (first defined at line 2)"),
        ("WFE008", 4, "duplicate key 'name' (first defined at line 4)"),
    ]


def test_non_string_keys() -> None:
    text = "workflow:\n  id: a\n  1: x\n  [a]: y\n  null: z\n  true: w\n  steps: []\n"
    got = [(d.code, d.line, d.message) for d in run(text).diagnostics]
    assert got[:4] == [
        ("WFE009", 3, "mapping keys must be strings; this key is 1"),
        ("WFE009", 4, "mapping keys must be strings; this key is a list"),
        ("WFE009", 5, "mapping keys must be strings; this key is null"),
        ("WFE009", 6, "mapping keys must be strings; this key is True"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workflow: []\n", "a workflow must be a mapping, got a list"),
        ("workflow: hello\n", "a workflow must be a mapping, got string 'hello'"),
        ("workflows: {id: x}\n", "'workflows' must be a list, got a mapping"),
        ("workflows: [1]\n", "a workflow must be a mapping, got number 1"),
        ("workflow: {id: [x], steps: [{name: a, type: noop}]}\n", "workflow 'id' must be"),
        ("workflow: {id: x, steps: {a: 1}}\n", "'steps' must be a list, got a mapping"),
        ("workflow: {id: x, steps: [[]]}\n", "a step must be a mapping, got a list"),
        ("workflow: {id: x, steps: [null]}\n", "a step must be a mapping, got null"),
        ("workflow: {id: x, steps: [{name: a, type: [noop]}]}\n", "'type' must be a string"),
        ("workflow: {id: x, steps: [{name: a, parallel: 3}]}\n", "'parallel' must be a list"),
        (
            "workflow: {id: x, steps: [{name: a, type: noop, when: yes}]}\n",
            "a condition must be a mapping, got string 'yes'",
        ),
        (
            "workflow: {id: x, description: [1], steps: [{name: a, type: noop}]}\n",
            "'description' must be a string",
        ),
        (
            "workflow: {id: x, inputs: [a], steps: [{name: a, type: noop}]}\n",
            "'inputs' must be a mapping",
        ),
        (
            "workflow: {id: x, steps: [{name: a, type: noop, on_failure: 1}]}\n",
            "a step must be a mapping, got number 1",
        ),
    ],
)
def test_wrong_types_everywhere(text: str, message: str) -> None:
    result = run(text)
    assert not result.ok
    assert any(message in d.message for d in result.diagnostics), [
        str(d) for d in result.diagnostics
    ]


def test_not_utf8_names_the_byte_offset_and_line() -> None:
    data = b"workflow:\n  id: caf\xe9\n"
    diag = single(data)
    assert diag.code == "WFE003"
    assert diag.message == (
        "file is not valid UTF-8: byte 0xe9 at offset 19 (line 2, byte 10 of that line)"
    )
    assert (diag.line, diag.column) == (2, 10)


def test_utf8_bom_is_accepted() -> None:
    assert run(b"\xef\xbb\xbf" + VALID).ok


@pytest.mark.parametrize("text", ["", "   \n\n", "# just a comment\n", "---\n", "~\n"])
def test_empty_file(text: str) -> None:
    diag = single(text)
    assert diag.code == "WFE005"
    assert "file is empty" in diag.message


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "a list"), ("hello\n", "string 'hello'"), ("42\n", "number 42")],
)
def test_top_level_not_a_mapping(text: str, got: str) -> None:
    diag = single(text)
    assert diag.code == "WFE011"
    assert diag.message == f"the top level of a workflow file must be a mapping, got {got}"


def test_tabs_for_indentation() -> None:
    diag = single("workflow:\n\tid: x\n")
    assert diag.code == "WFE004"
    assert diag.line == 2
    assert diag.hint == "YAML does not allow tabs for indentation; use spaces"


def test_syntax_error_has_parser_position() -> None:
    diag = single("workflow:\n  id: [x\n  steps: []\n")
    assert diag.code == "WFE004"
    assert diag.message.startswith("invalid YAML: ")
    assert diag.line >= 2


def test_several_documents() -> None:
    diag = single("workflow: {id: a}\n---\nworkflow: {id: b}\n")
    assert diag.code == "WFE004" and "exactly one YAML document" in diag.message


@pytest.mark.parametrize(
    "text",
    [
        "workflow: !!python/object/apply:os.system ['echo pwned']\n",
        "workflow: !!python/name:os.system\n",
        "workflow: !custom {id: x}\n",
        "workflow: {id: !!binary aGk=}\n",
        "workflow: {id: !!timestamp 2001-12-14}\n",
    ],
)
def test_object_constructing_tags_are_refused(text: str) -> None:
    result = run(text)
    assert not result.ok
    tags = [d for d in result.diagnostics if d.code == "WFE010"]
    assert tags and "unsupported YAML tag" in tags[0].message


def test_standard_tags_and_yaml12_scalars() -> None:
    text = (
        "workflow:\n  id: !!str 123\n  inputs:\n"
        "    a: {type: string, default: yes}\n"
        "    b: {type: string, default: 2001-12-14}\n"
        "    c: {type: integer, default: !!int '7'}\n"
        "  steps: [{name: s, type: noop}]\n"
    )
    result = run(text)
    assert result.ok, [str(d) for d in result.diagnostics]
    workflow = result.select(None)
    assert workflow.id == "123"
    assert [i.default for i in workflow.inputs] == ["yes", "2001-12-14", 7]
    bad = run("workflow: {id: !!int abc}\n")
    assert any(
        d.code == "WFE010" and "'abc' is not a valid !!int" in d.message for d in bad.diagnostics
    )


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b"])
def test_control_characters(char: str) -> None:
    diag = single(f"workflow:\n  id: a{char}b\n")
    assert diag.code == "WFE004"
    assert diag.line == 2
    assert f"0x{ord(char):02x}" in diag.message


def test_huge_integer_stays_text() -> None:
    result = run("workflow: {id: x, steps: [{name: a, type: noop, timeout: " + "9" * 5000 + "}]}\n")
    assert not result.ok
    assert result.diagnostics[0].code == "WFE026"


def test_long_lines_and_many_steps_are_fine() -> None:
    long_value = "x" * 200_000
    step = f"{{name: a, type: run, config: {{run: {long_value}}}}}"
    text = f"workflow:\n  id: wf\n  steps:\n    - {step}\n"
    assert run(text).ok


def test_random_mutations_never_raise(parser: str) -> None:
    """Property-style fuzz: random byte edits of a valid file always yield a result."""
    rng = random.Random(20261123)
    alphabet = b"{}[]:,-&*!|>'\"#%@`\t\n ${}\xff\x00abc123"
    for _ in range(1500 if parser == "libyaml" else 400):
        data = bytearray(VALID)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(data) + 1)
            if op < 0.4 and data:
                data[min(pos, len(data) - 1)] = rng.choice(alphabet)
            elif op < 0.7:
                data[pos:pos] = bytes([rng.choice(alphabet)])
            elif data:
                del data[pos : pos + rng.randint(1, 20)]
        result = run(bytes(data))
        assert isinstance(result, CompileResult)
        assert all(d.code != "WFE099" for d in result.diagnostics), [
            str(d) for d in result.diagnostics
        ]
        assert result.ok == (result.workflows != ())


def test_lone_surrogate_in_text() -> None:
    diag = single("workflow:\n  id: a\ud800\n")
    assert diag.code == "WFE003"
    assert diag.message == (
        "text holds a lone surrogate U+D800 that UTF-8 cannot encode (line 2, column 8)"
    )


def test_many_plain_nodes_hit_the_node_cap_without_an_alias_hint(parser: str) -> None:
    if parser == "python":
        pytest.skip("slow with the pure-Python parser; the cap itself is parser-independent")
    text = "x-a: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n"
    diag = single(text)
    assert diag.code == "WFE007" and diag.hint is None


def test_pathological_reference_files_stay_fast(parser: str) -> None:
    """Thousands of unknown names against thousands of candidates: hints are budgeted."""
    lines = ["workflow:", "  id: w", "  steps:"]
    lines += [f"    - {{name: step_number_{i}, type: noop}}" for i in range(1500)]
    refs = " ".join(f"${{{{ steps.stepnumber{i}x.outputs.a }}}}" for i in range(40))
    lines += [f"    - {{name: r{i}, type: run, config: {{run: '{refs}'}}}}" for i in range(100)]
    if parser == "python":
        pytest.skip("the budget is parser-independent")
    started = time.monotonic()
    result = run("\n".join(lines) + "\n")
    assert time.monotonic() - started < 10
    assert len(result.diagnostics) == 4000
    assert result.diagnostics[0].hint == "did you mean 'step_number_0'?"
    assert result.diagnostics[-1].hint is None  # the budget ran out long before


def test_aliases_cannot_stack_nesting_beyond_the_cap() -> None:
    deep = "[" * 40 + "]" * 40
    text = (
        f"x-a: &a {deep}\nx-b: &b [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
    )
    diag = single(text)
    assert diag.code == "WFE006"
    assert "alias *a used here nests" in diag.message
    assert diag.line == 2


def _containers(obj: object) -> list[dict[object, object] | list[object]]:
    found: list[dict[object, object] | list[object]] = []
    work = [obj]
    while work:
        current = work.pop()
        if isinstance(current, dict) and current:
            found.append(current)
            work.extend(current.values())
        elif isinstance(current, list) and current:
            found.append(current)
            work.extend(current)
    return found


def test_random_wrong_types_never_raise(parser: str) -> None:
    """Structure-aware fuzz: values replaced by values of other types, keys added and removed."""
    if parser == "python":
        pytest.skip("exercises the compiler's checks, not parsing")
    rng = random.Random(7)
    base = yaml.safe_load((FIXTURES / "kitchen_sink.yaml").read_text())
    values: list[object] = [
        None,
        True,
        0,
        -1,
        1.5,
        "",
        "x",
        "${{",
        "${{ steps.build.outputs.x }}",
        [],
        {},
        [1],
        {"a": 1},
        {"field": "inputs.tag"},
        {"all": []},
        "-5s",
        "noop",
        [{"name": "z", "type": "noop"}],
        {"name": "q", "type": "run", "config": {"run": 1}},
    ]
    keys = [
        "name",
        "type",
        "config",
        "parallel",
        "when",
        "timeout",
        "retry",
        "on_failure",
        "ensure",
        "id",
        "steps",
        "field",
        "not",
        "bogus",
        1,
    ]
    for _ in range(150):
        doc = copy.deepcopy(base)
        for _ in range(rng.randint(1, 4)):
            containers = _containers(doc)
            if not containers:
                break
            target = rng.choice(containers)
            value = copy.deepcopy(rng.choice(values))
            if isinstance(target, dict):
                key = rng.choice(list(target)) if rng.random() < 0.8 else rng.choice(keys)
                target[key] = value
            else:
                target[rng.randrange(len(target))] = value
        result = run(yaml.safe_dump(doc))
        assert all(d.code != "WFE099" for d in result.diagnostics), [
            str(d) for d in result.diagnostics
        ]


def test_node_cap_counts_each_node_once() -> None:
    """Deeply placed scalars count once: a big, deep but honest file stays under the cap."""
    depth = 30
    inner = "[" * depth + ", ".join(["1"] * 3000) + "]" * depth
    lines = [f"x-{i}: {inner}" for i in range(30)]  # 30 * (3000 + 30) nodes: under the cap
    result = run("\n".join(lines) + "\n")
    assert [d.code for d in result.diagnostics] == ["WFE014"]  # no workflow, but no WFE007
