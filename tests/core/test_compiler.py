"""The compiler on valid and invalid workflows: structure, keys, steps, durations, retry."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from wfe_core.compiler import CompileError, CompileResult, compile_file, compile_text
from wfe_core.contracts import Diagnostic, Severity
from wfe_core.model import Combine, Compare, Not, RetryPolicy
from wfe_core.plugins import PluginRegistry

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import fake_plugins  # type: ignore[import-not-found]  # noqa: E402


def compile_yaml(text: str, registry: PluginRegistry | None = None) -> CompileResult:
    return compile_text(
        textwrap.dedent(text),
        file="wf.yaml",
        registry=registry or fake_plugins.registry(),
        base_dir=FIXTURES,
    )


def errors(result: CompileResult) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.severity is Severity.ERROR]


def only_error(result: CompileResult) -> Diagnostic:
    found = errors(result)
    assert len(found) == 1, [str(d) for d in result.diagnostics]
    return found[0]


def steps_yaml(steps: str, inputs: str = "") -> str:
    """A one-workflow file around an indented block of steps."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "    ")
    head = "workflow:\n  id: wf\n"
    if inputs:
        head += "  inputs:\n" + textwrap.indent(textwrap.dedent(inputs).strip("\n"), "    ") + "\n"
    return head + "  steps:\n" + body + "\n"


def test_design_example_compiles() -> None:
    result = compile_file(FIXTURES / "design_example.yaml", fake_plugins.registry())
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.diagnostics == ()
    workflow = result.select(None)
    assert workflow.id == "build-and-test"
    assert workflow.version == 1
    assert [i.name for i in workflow.inputs] == ["tag"]
    assert workflow.inputs[0].default == "dev"
    build, test, checks, report = workflow.steps
    assert build.type == "run"
    assert build.raw_config == {
        "run": "docker build",
        "tags": ["127.0.0.1:5000/app:${{ inputs.tag }}"],
    }
    assert isinstance(build.config, fake_plugins.RunConfig)
    assert build.config.tags == ["127.0.0.1:5000/app:${{ inputs.tag }}"]
    assert build.location.line == 7 and build.location.column == 7
    assert build.location.file.endswith("design_example.yaml")
    assert test.timeout == 600
    assert test.retry == RetryPolicy(max_attempts=2, interval=5.0)
    assert checks.is_parallel and [s.name for s in checks.parallel] == ["lint", "docs"]
    assert report.when == Compare("steps.test.outputs.exit_code", "equals", 0)
    assert report.depends_on == frozenset({"test", "build"})
    assert build.depends_on == frozenset()


def test_workflows_list_and_select() -> None:
    result = compile_yaml(
        """
        workflows:
          - id: one
            steps: [{name: a, type: noop}]
          - id: two
            steps: [{name: b, type: noop}]
        """
    )
    assert result.ok
    assert result.select("two").steps[0].name == "b"
    with pytest.raises(CompileError) as ambiguous:
        result.select(None)
    assert "defines 2 workflows (one, two)" in str(ambiguous.value)
    with pytest.raises(CompileError) as unknown:
        result.select("tow")
    diag = unknown.value.diagnostics[0]
    assert diag.code == "WFE060"
    assert diag.hint == "did you mean 'two'?"


def test_select_on_failed_result_raises_the_errors() -> None:
    result = compile_yaml("workflow: {id: x, steps: []}\n")
    assert not result.ok and result.workflows == ()
    with pytest.raises(CompileError) as failed:
        result.select(None)
    assert failed.value.diagnostics == tuple(errors(result))


def test_unknown_step_key_has_did_you_mean() -> None:
    diag = only_error(compile_yaml(steps_yaml("- {name: a, type: noop, tiemout: 5s}")))
    assert diag.code == "WFE012"
    assert "unknown key 'tiemout' in step 'a'" in diag.message
    assert diag.hint == "did you mean 'timeout'?"
    assert (diag.line, diag.column) == (4, 29)
    assert str(diag) == (
        "wf.yaml:4:29: error[WFE012]: unknown key 'tiemout' in step 'a' "
        "(hint: did you mean 'timeout'?)"
    )


def test_unknown_workflow_and_top_level_keys() -> None:
    result = compile_yaml(
        """
        x-templates: {a: 1}
        workflow:
          id: wf
          stpes: []
        wokflows: []
        """
    )
    messages = [(d.code, d.message, d.hint) for d in errors(result)]
    assert ("WFE012", "unknown key 'stpes' in a workflow", "did you mean 'steps'?") in messages
    assert ("WFE013", "a workflow is missing the required key 'steps'", None) in messages
    assert (
        "WFE012",
        "unknown key 'wokflows' in the top level",
        "did you mean 'workflows'?",
    ) in messages


def test_top_level_needs_exactly_one_of_workflow_and_workflows() -> None:
    both = only_error(
        compile_yaml("workflow: {id: a, steps: [{name: s, type: noop}]}\nworkflows: []\n")
    )
    assert both.code == "WFE014" and "not both" in both.message
    neither = only_error(compile_yaml("x-a: 1\n"))
    assert neither.code == "WFE014" and "needs a 'workflow'" in neither.message


def test_workflow_header_errors() -> None:
    result = compile_yaml(
        """
        workflows:
          - {version: 2, steps: [{name: a, type: noop}]}
          - {id: "bad id", steps: [{name: b, type: noop}]}
          - {id: ok, version: "1", steps: [{name: c, type: noop}]}
          - {id: ok, steps: [{name: d, type: noop}]}
        """
    )
    got = [(d.line, d.code, d.message) for d in errors(result)]
    assert got[0][1] == "WFE013" and "required key 'id'" in got[0][2]
    assert got[1][:2] == (3, "WFE016") and "version 2" in got[1][2]
    assert got[2][:2] == (4, "WFE015")
    assert got[3][:2] == (5, "WFE016")
    assert got[4][:2] == (6, "WFE015") and "duplicate workflow id 'ok'" in got[4][2]


def test_all_problems_are_reported_together_in_file_order() -> None:
    result = compile_yaml(
        steps_yaml(
            """
            - name: a
              type: nope
            - name: b
              type: run
              config: {run: x, retries: many}
              timeout: soon
            - name: a
              type: noop
              bogus: 1
            """
        )
    )
    got = [(d.line, d.code) for d in errors(result)]
    assert got == [(5, "WFE023"), (8, "WFE050"), (9, "WFE026"), (10, "WFE021"), (12, "WFE012")]
    assert result.workflows == ()


def test_step_names() -> None:
    result = compile_yaml(
        steps_yaml(
            """
            - {type: noop}
            - {name: "1abc", type: noop}
            - {name: 7, type: noop}
            - name: ok
              type: noop
              on_failure: {name: ok, type: noop}
            """
        )
    )
    got = [(d.code, d.message) for d in errors(result)]
    assert got[0] == ("WFE013", "step is missing the required key 'name'")
    assert got[1][0] == "WFE020" and "invalid step name '1abc'" in got[1][1]
    assert got[2] == ("WFE011", "step 'name' must be a string, got number 7")
    assert got[3][0] == "WFE021" and "duplicate step name 'ok' (first used at line 7)" in got[3][1]


def test_step_names_are_unique_across_the_file() -> None:
    result = compile_yaml(
        """
        workflows:
          - id: one
            steps:
              - name: p
                parallel: [{name: x, type: noop}]
          - id: two
            steps: [{name: x, type: noop}]
        """
    )
    diag = only_error(result)
    assert diag.code == "WFE021" and diag.line == 8


def test_hook_names_default_from_their_step() -> None:
    result = compile_yaml(
        steps_yaml(
            """
            - name: build
              type: noop
              on_failure: {type: noop}
              ensure: {type: noop}
            """
        )
    )
    assert result.ok
    step = result.select(None).steps[0]
    assert step.on_failure is not None and step.on_failure.name == "build-on_failure"
    assert step.ensure is not None and step.ensure.name == "build-ensure"


def test_step_kind_errors() -> None:
    result = compile_yaml(
        steps_yaml(
            """
            - name: both
              type: noop
              parallel: [{name: c1, type: noop}]
            - name: neither
            - name: orphan
              config: {}
            - name: empty
              parallel: []
            - name: retried
              parallel: [{name: c2, type: noop}]
              retry: {max_attempts: 2}
            """
        )
    )
    got = [(d.line, d.code, d.message) for d in errors(result)]
    assert got == [
        (5, "WFE022", "'type' is not allowed together with 'parallel'"),
        (7, "WFE022", "step 'neither' needs 'type' (with 'config') or 'parallel'"),
        (9, "WFE022", "'config' needs a 'type'"),
        (11, "WFE025", "'parallel' needs at least one step"),
        (14, "WFE022", "'retry' is not supported on a parallel block; put it on the steps inside"),
    ]


def test_unknown_type_lists_known_types() -> None:
    diag = only_error(compile_yaml(steps_yaml("- {name: a, type: rum}")))
    assert diag.code == "WFE023"
    assert diag.message == "unknown step type 'rum'; installed types: noop, run"
    assert diag.hint == "did you mean 'run'?"


def test_broken_plugin_is_explained_with_its_distribution() -> None:
    result = compile_yaml(steps_yaml("- {name: a, type: broken}"), fake_plugins.BrokenRegistry())
    diag = only_error(result)
    assert diag.code == "WFE024"
    assert "wfe-broken" in diag.message and "No module named 'grpc'" in diag.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timeout: -5s", "duration '-5s' is negative"),
        ("timeout: 5 minutes", "invalid duration '5 minutes'"),
        ("timeout: 0", "'timeout' must be greater than zero"),
        ("timeout: true", "expected a duration such as 30s, got true"),
        ("timeout: [1]", "expected a duration such as 30s, got a list"),
        ("timeout: -3", "negative"),
        ("timeout: 100000h", "longer than a year"),
        ("continue_on_error: yes", "'continue_on_error' must be true or false, got string 'yes'"),
        ("retry: {max_attempts: 0}", "'max_attempts' must be an integer of at least 1"),
        ("retry: {max_attempts: 2, backoff: 0.5}", "'backoff' must be a number between 1"),
        ("retry: {interval: soon}", "'interval': invalid duration 'soon'"),
        ("retry: {max_atempts: 2}", "unknown key 'max_atempts' in 'retry'"),
        ("retry: 3", "'retry' must be a mapping, got number 3"),
    ],
)
def test_step_option_errors(text: str, message: str) -> None:
    diag = only_error(compile_yaml(steps_yaml(f"- name: a\n  type: noop\n  {text}")))
    assert message in diag.message
    assert diag.line == 6


def test_step_options_are_compiled() -> None:
    result = compile_yaml(
        steps_yaml(
            """
            - name: a
              type: noop
              timeout: 1m30s
              continue_on_error: true
              retry: {max_attempts: 3, interval: 500ms, backoff: 2, max_interval: 2}
            """
        )
    )
    step = result.select(None).steps[0]
    assert step.timeout == 90
    assert step.continue_on_error is True
    assert step.retry == RetryPolicy(3, 0.5, 2.0, 2.0)


def test_conditions_compile() -> None:
    result = compile_yaml(
        steps_yaml(
            """
            - {name: a, type: noop}
            - name: b
              type: noop
              when:
                all:
                  - {field: inputs.flag, equals: true}
                  - not: {field: env.CI, is_null: true}
                  - any:
                      - {field: steps.a.outputs.n, gte: 3}
                      - {field: steps.a.outputs.tags, contains: x}
            """,
            inputs="flag: {type: boolean, default: false}",
        )
    )
    assert result.ok, [str(d) for d in result.diagnostics]
    step = result.select(None).steps[1]
    assert step.when == Combine(
        "all",
        (
            Compare("inputs.flag", "equals", True),
            Not(Compare("env.CI", "is_null")),
            Combine(
                "any",
                (
                    Compare("steps.a.outputs.n", "gte", 3),
                    Compare("steps.a.outputs.tags", "contains", "x"),
                ),
            ),
        ),
    )
    assert step.depends_on == frozenset({"a"})


@pytest.mark.parametrize(
    ("when", "code", "message"),
    [
        ("{field: inputs.x, equals: 1, gt: 2}", "WFE030", "exactly one operator"),
        ("{field: inputs.x}", "WFE030", "found none"),
        ("{field: inputs.x, equal: 1}", "WFE012", "unknown key 'equal' in a condition"),
        ("{field: inputs.x, gt: '3'}", "WFE030", "'gt' compares with a number"),
        ("{field: inputs.x, is_null: false}", "WFE030", "write 'is_null: true'"),
        ("{field: 5, equals: 1}", "WFE031", "'field' must be a string"),
        ("{field: .outputs.x, equals: 1}", "WFE031", "invalid field path"),
        ("{field: outputs.x, equals: 1}", "WFE031", "unknown expression root 'outputs'"),
        ("{all: []}", "WFE030", "'all' needs at least one condition"),
        ("{any: {field: inputs.x, equals: 1}}", "WFE011", "'any' must be a list"),
        ("{all: [], any: []}", "WFE030", "exactly one of"),
        ("{}", "WFE030", "exactly one of"),
        ("{al: []}", "WFE012", "unknown key 'al' in a condition"),
        ("[1]", "WFE011", "a condition must be a mapping"),
        ("{not: [1]}", "WFE011", "a condition must be a mapping"),
    ],
)
def test_condition_errors(when: str, code: str, message: str) -> None:
    result = compile_yaml(
        steps_yaml(f"- name: a\n  type: noop\n  when: {when}", inputs="x: {type: integer}")
    )
    found = errors(result)
    assert found, "expected an error"
    assert found[0].code == code
    assert message in found[0].message


def test_inputs() -> None:
    result = compile_yaml(
        steps_yaml(
            "- {name: a, type: noop}",
            inputs="""
            tag: string
            count: {type: integer, default: 3, description: how many}
            must: {type: boolean, required: true}
            none:
            """,
        )
    )
    assert result.ok
    inputs = {i.name: i for i in result.select(None).inputs}
    assert inputs["tag"].type == "string"
    assert inputs["count"].default == 3 and inputs["count"].description == "how many"
    assert inputs["must"].required is True
    assert inputs["none"].type == "string"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x: {type: text}", "input 'x' has unknown type 'text'"),
        (
            "x: {type: integer, default: a}",
            "default of input 'x' must be an integer, got string 'a'",
        ),
        ("x: {typ: string}", "unknown key 'typ' in input 'x'"),
        ("x: [1]", "input 'x' must be a mapping, got a list"),
        ("1x: string", "invalid input name '1x'"),
        ("x: {required: maybe}", "'required' of input 'x' must be true or false"),
    ],
)
def test_input_errors(spec: str, message: str) -> None:
    diag = only_error(compile_yaml(steps_yaml("- {name: a, type: noop}", inputs=spec)))
    assert message in diag.message


def test_required_input_with_default_is_a_warning() -> None:
    result = compile_yaml(
        steps_yaml("- {name: a, type: noop}", inputs="x: {required: true, default: a}")
    )
    assert result.ok
    assert [d.severity for d in result.diagnostics] == [Severity.WARNING]


def test_unreadable_file(tmp_path: Path) -> None:
    result = compile_file(tmp_path / "missing.yaml", fake_plugins.registry())
    diag = only_error(result)
    assert diag.code == "WFE001"
    assert "cannot read the workflow file: No such file or directory" in diag.message
    assert diag.file.endswith("missing.yaml")
    directory = compile_file(tmp_path, fake_plugins.registry())
    assert only_error(directory).code == "WFE001"


def test_base_dir_is_the_file_directory(tmp_path: Path) -> None:
    seen: list[Path] = []

    def record(config: object, ctx: fake_plugins.ValidationContext) -> list[Diagnostic]:
        seen.append(ctx.base_dir)
        return []

    plugin = fake_plugins.ExecutorPlugin(
        "rec", fake_plugins.EmptyConfig, lambda c: fake_plugins._Noop(), validators=(record,)
    )
    path = tmp_path / "wf.yaml"
    path.write_text(steps_yaml("- {name: a, type: rec}"))
    result = compile_file(path, PluginRegistry([plugin], discover=False))
    assert result.ok
    assert seen == [tmp_path.resolve()]


def test_thousand_steps_compile_fast() -> None:
    """Guards against quadratic work; the real figure is measured by benchmarks/engine.py."""
    import time

    lines = ["workflow:", "  id: big", "  inputs: {tag: string}", "  steps:"]
    for i in range(1000):
        previous = f"s{i - 1}" if i else "s0"
        lines += [
            f"    - name: s{i}",
            "      type: run",
            "      timeout: 30s",
            "      retry: {max_attempts: 2, interval: 1s, backoff: 2}",
            f"      when: {{field: steps.{previous}.outputs.ok, equals: 'yes'}}" if i else "",
            (
                f"      config: {{run: 'echo ${{{{ inputs.tag }}}} "
                f"${{{{ steps.{previous}.outputs.x }}}}', env: {{A: b, C: d}}, "
                "mounts: [{source: /a, target: /b}], tags: [a, b, c]}"
            )
            if i
            else "      config: {run: echo}",
        ]
    text = "\n".join(line for line in lines if line) + "\n"
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        result = compile_yaml(text)
        best = min(best, time.perf_counter() - started)
    assert result.ok
    assert len(result.select(None).steps) == 1000
    assert best < 1.0, f"compiling 1,000 steps took {best:.3f}s"


def test_kitchen_sink() -> None:
    result = compile_file(FIXTURES / "kitchen_sink.yaml", fake_plugins.registry())
    assert result.diagnostics == (), [str(d) for d in result.diagnostics]
    sink = result.select("sink")
    assert [i.name for i in sink.inputs] == ["tag", "count", "ratio", "release", "note"]
    build, checks, publish = sink.steps
    assert build.timeout == 90 and build.retry == RetryPolicy(3, 0.5, 2.0, 10.0)
    assert build.on_failure is not None and build.on_failure.name == "notify"
    assert build.on_failure.depends_on == frozenset({"build"})
    assert build.ensure is not None and build.ensure.name == "build-ensure"
    assert build.raw_config["run"].endswith("literal $${{ not.a.reference }}\n")
    assert checks.is_parallel and checks.continue_on_error and checks.timeout == 600
    assert checks.depends_on == frozenset({"build"})
    assert [s.name for s in checks.parallel] == ["lint", "more"]
    assert [s.name for s in checks.parallel[1].parallel] == ["unit", "docs"]
    assert publish.config is None  # `retries` holds a reference: structured at run time
    assert publish.depends_on == frozenset({"unit", "lint", "build", "notify"})
    assert result.select("second").steps[0].name == "only"
