"""Static checks of ``${{ ... }}`` references and ``when`` fields, and ``depends_on``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from wfe_core.compiler import CompileResult, compile_text
from wfe_core.contracts import Diagnostic, Severity
from wfe_core.model import Step

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import fake_plugins  # type: ignore[import-not-found]  # noqa: E402


def compile_steps(steps: str, inputs: str = "tag: string") -> CompileResult:
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "    ")
    ins = textwrap.indent(textwrap.dedent(inputs).strip("\n"), "    ")
    text = f"workflow:\n  id: wf\n  inputs:\n{ins}\n  steps:\n{body}\n"
    return compile_text(text, file="wf.yaml", registry=fake_plugins.registry(), base_dir=FIXTURES)


def errors(result: CompileResult) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.severity is Severity.ERROR]


def by_name(result: CompileResult) -> dict[str, Step]:
    found: dict[str, Step] = {}
    work = list(result.select(None).steps)
    while work:
        step = work.pop()
        found[step.name] = step
        work.extend(step.parallel)
        work.extend(s for s in (step.on_failure, step.ensure) if s is not None)
    return found


def test_reference_position_is_the_reference_itself() -> None:
    result = compile_steps('- {name: a, type: run, config: {run: "echo ${{ inputs.tga }}"}}')
    (diag,) = errors(result)
    assert diag.code == "WFE041"
    assert diag.message == "unknown input 'tga' (workflow 'wf' declares: tag)"
    assert diag.hint == "did you mean 'tag'?"
    # line 6 is the step; the reference starts after 'echo ' inside the quotes
    assert (diag.line, diag.column) == (6, 48)


def test_reference_position_in_block_scalar() -> None:
    result = compile_steps(
        """
        - name: a
          type: run
          config:
            run: |
              echo one
              echo ${{ steps.zz.outputs.x }} and ${{ steps.zz.outputs.x }}
        """
    )
    diags = errors(result)
    assert [(d.code, d.line, d.column) for d in diags] == [
        ("WFE042", 11, 16),
        ("WFE042", 11, 46),
    ]
    assert diags[0].message == "unknown step 'zz'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("echo ${{ inputs.tag", "unterminated '${{': missing '}}'"),
        ("echo ${{ }}", "empty expression"),
        ('echo ${{ inputs.tag || "x" }}', "only plain references are allowed"),
        ("echo ${{ steps.a.digest }}", "write steps.STEP.outputs.KEY"),
        ("echo ${{ secrets.x }}", "unknown expression root 'secrets'"),
        ("echo ${{ inputs }}", "write inputs.NAME"),
        ("echo ${{ env.A-B }}", "write env.NAME"),
    ],
)
def test_malformed_expressions(text: str, message: str) -> None:
    result = compile_steps(f"- {{name: a, type: run, config: {{run: '{text}'}}}}")
    (diag,) = errors(result)
    assert diag.code == "WFE040"
    assert message in diag.message
    assert diag.column == 48


def test_escaped_expression_is_not_checked() -> None:
    result = compile_steps("- {name: a, type: run, config: {run: 'echo $${{ nothing }}'}}")
    assert result.ok


def test_order_rules() -> None:
    result = compile_steps(
        """
        - name: first
          type: run
          config: {run: "${{ steps.first.outputs.x }} ${{ steps.later.outputs.x }}"}
        - name: block
          parallel:
            - name: left
              type: run
              config: {run: "${{ steps.right.outputs.x }} ${{ steps.first.outputs.x }}"}
            - name: right
              type: noop
        - name: later
          type: run
          config: {run: "${{ steps.left.outputs.x }} ${{ steps.block-ensure.outputs.x }}"}
          ensure: {type: noop}
        """
    )
    got = [(d.code, d.message) for d in errors(result)]
    assert got == [
        ("WFE043", "step 'first' cannot read its own outputs"),
        ("WFE043", "step 'later' runs after 'first', so its outputs are not available"),
        (
            "WFE043",
            "step 'right' runs in parallel with 'left' (both in block 'block'), so its outputs "
            "are not available",
        ),
        ("WFE042", "unknown step 'block-ensure'"),
    ]


def test_hooks_see_their_step_and_ensure_sees_on_failure() -> None:
    result = compile_steps(
        """
        - name: build
          type: noop
          on_failure:
            name: notify
            type: run
            config: {run: "${{ steps.build.outputs.x }}"}
          ensure:
            name: cleanup
            type: run
            config: {run: "${{ steps.notify.outputs.z }}"}
        - name: next
          type: run
          config: {run: "${{ steps.cleanup.outputs.z }} ${{ steps.notify.outputs.z }}"}
          on_failure:
            type: run
            config: {run: "${{ steps.next-ensure.outputs.x }}"}
          ensure: {type: noop}
        """
    )
    got = [(d.code, d.message) for d in errors(result)]
    assert got == [
        (
            "WFE043",
            "step 'next-ensure' runs after 'next-on_failure', so its outputs are not available",
        )
    ]


def test_references_to_another_workflow() -> None:
    text = textwrap.dedent(
        """
        workflows:
          - id: one
            steps: [{name: a, type: noop}]
          - id: two
            steps:
              - {name: b, type: run, config: {run: "${{ steps.a.outputs.x }}"}}
        """
    )
    result = compile_text(text, file="f", registry=fake_plugins.registry(), base_dir=FIXTURES)
    (diag,) = errors(result)
    assert diag.message == "unknown step 'a'; it belongs to workflow 'one'"


def test_depends_on_collects_config_and_when_references() -> None:
    result = compile_steps(
        """
        - {name: a, type: noop}
        - {name: b, type: noop}
        - name: c
          type: run
          when: {field: steps.a.outputs.ok, equals: "yes"}
          config:
            run: "${{ inputs.tag }} ${{ env.HOME }}"
            env: {X: "${{ steps.b.outputs.y }}"}
        - name: d
          parallel:
            - {name: e, type: run, config: {run: "${{ steps.c.outputs.x }}"}}
        """
    )
    assert result.ok, [str(d) for d in result.diagnostics]
    steps = by_name(result)
    assert steps["c"].depends_on == frozenset({"a", "b"})  # a from when, b from config
    assert steps["d"].depends_on == frozenset()
    assert steps["e"].depends_on == frozenset({"c"})
    assert steps["a"].depends_on == frozenset()


def test_when_field_may_be_wrapped_in_braces() -> None:
    result = compile_steps(
        """
        - {name: a, type: noop}
        - {name: b, type: noop, when: {field: "${{ steps.a.outputs.x }}", equals: 1}}
        """
    )
    assert result.ok
    when = by_name(result)["b"].when
    assert when is not None and getattr(when, "field", None) == "steps.a.outputs.x"


def test_when_field_is_checked_like_a_reference() -> None:
    result = compile_steps(
        """
        - {name: a, type: noop, when: {field: steps.b.outputs.x, equals: 1}}
        - {name: b, type: noop, when: {field: inputs.nope, equals: 1}}
        """
    )
    got = [(d.code, d.line, d.column) for d in errors(result)]
    assert got == [("WFE043", 6, 43), ("WFE041", 7, 43)]


def test_nested_paths_into_outputs_are_accepted() -> None:
    result = compile_steps(
        """
        - {name: a, type: noop}
        - {name: b, type: run, config: {run: "${{ steps.a.outputs.tags.0 }}"}}
        """
    )
    assert result.ok


def test_condition_values_are_literals() -> None:
    result = compile_steps(
        """
        - {name: a, type: noop}
        - {name: b, type: noop, when: {field: steps.a.outputs.x, equals: "v${{ inputs.tag }}"}}
        """
    )
    (diag,) = errors(result)
    assert diag.code == "WFE030"
    assert "cannot hold a ${{ ... }} reference" in diag.message
    assert (diag.line, diag.column) == (7, 72)


def test_block_hooks_see_hooks_of_the_block_children() -> None:
    result = compile_steps(
        """
        - name: block
          parallel:
            - name: left
              type: noop
              ensure: {name: left-cleanup, type: noop}
            - name: right
              parallel:
                - {name: deep, type: noop}
                - {name: deeper, type: run, config: {run: "${{ steps.deep.outputs.x }}"}}
          on_failure:
            type: run
            config: {run: "${{ steps.left-cleanup.outputs.x }} ${{ steps.deep.outputs.x }}"}
        - name: after
          type: run
          config: {run: "${{ steps.block-on_failure.outputs.x }} ${{ steps.deeper.outputs.y }}"}
        """
    )
    got = [(d.code, d.message) for d in errors(result)]
    assert got == [
        (
            "WFE043",
            "step 'deep' runs in parallel with 'deeper' (both in block 'right'), so its outputs "
            "are not available",
        )
    ]


def test_parallel_blocks_have_no_outputs() -> None:
    result = compile_steps(
        """
        - name: block
          parallel: [{name: a, type: noop}]
        - {name: b, type: run, config: {run: "${{ steps.block.outputs.x }}"}}
        """
    )
    (diag,) = errors(result)
    assert diag.code == "WFE042"
    assert diag.message == "step 'block' is a parallel block, which has no outputs"
