"""Executor config: cattrs structuring errors at the offending key, validators, the real shell."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

from wfe_core.compiler import CompileResult, ConfigError, compile_text, structure_config
from wfe_core.contracts import Diagnostic, Severity
from wfe_core.plugins import PluginRegistry

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import fake_plugins  # type: ignore[import-not-found]  # noqa: E402


def compile_config(config: str, registry: PluginRegistry | None = None) -> CompileResult:
    block = textwrap.indent(textwrap.dedent(config).strip("\n"), " " * 8)
    text = (
        "workflow:\n  id: wf\n  inputs: {n: integer}\n  steps:\n"
        f"    - name: s\n      type: run\n      config:\n{block}\n"
    )
    return compile_text(
        text, file="wf.yaml", registry=registry or fake_plugins.registry(), base_dir=FIXTURES
    )


def diags(result: CompileResult) -> list[tuple[str, int, int, str]]:
    return [(d.code, d.line, d.column, d.message) for d in result.diagnostics]


def test_valid_config_is_structured() -> None:
    result = compile_config(
        """
        run: make
        retries: "3"
        ratio: 2
        verbose: "true"
        mode: slow
        network: host
        env: {A: "1", B: 2}
        mounts: [{source: /a, target: /b}]
        """
    )
    assert result.ok, diags(result)
    config = result.select(None).steps[0].config
    assert isinstance(config, fake_plugins.RunConfig)
    assert config.retries == 3 and config.ratio == 2.0 and config.verbose is True
    assert config.network is fake_plugins.Network.HOST
    assert config.env == {"A": "1", "B": "2"}
    assert config.mounts == [fake_plugins.Mount("/a", "/b")]


def test_missing_required_key_points_at_config() -> None:
    result = compile_config("verbose: true")
    assert diags(result) == [
        ("WFE052", 7, 7, "missing required key 'run' (step 's', type 'run')"),
    ]


def test_missing_config_points_at_type() -> None:
    text = "workflow:\n  id: wf\n  steps:\n    - name: s\n      type: run\n"
    result = compile_text(text, file="f", registry=fake_plugins.registry(), base_dir=FIXTURES)
    assert [(d.code, d.line, d.column) for d in result.diagnostics] == [("WFE052", 5, 7)]


def test_each_problem_at_its_key() -> None:
    result = compile_config(
        """
        run: make
        retries: lots
        verbose: "no"
        mode: medium
        tags: one
        env: {A: [1]}
        mounts:
          - {source: /a, target: /b, readonly: true}
          - {source: /a, targte: /b}
        workdri: /tmp
        """
    )
    got = diags(result)
    assert got == [
        (
            "WFE050",
            9,
            9,
            "config.retries: expected an integer, got string 'lots' (step 's', type 'run')",
        ),
        (
            "WFE050",
            10,
            9,
            "config.verbose: expected true or false, got string 'no' (step 's', type 'run')",
        ),
        (
            "WFE050",
            11,
            9,
            "config.mode: expected one of 'fast' or 'slow', got string "
            "'medium' (step 's', type 'run')",
        ),
        ("WFE050", 12, 9, "config.tags: expected a list, got string 'one' (step 's', type 'run')"),
        ("WFE050", 13, 15, "config.env.A: expected a string, got a list (step 's', type 'run')"),
        ("WFE052", 16, 13, "missing required key 'target' (step 's', type 'run')"),
        ("WFE051", 16, 26, "unknown key 'targte' (step 's', type 'run')"),
        ("WFE051", 17, 9, "unknown key 'workdri' (step 's', type 'run')"),
    ]
    hints = {d.message.split(" (")[0]: d.hint for d in result.diagnostics}
    assert hints["unknown key 'targte'"] == "did you mean 'target'?"
    assert hints["unknown key 'workdri'"] == "did you mean 'workdir'?"


def test_config_must_be_a_mapping() -> None:
    text = "workflow:\n  id: wf\n  steps:\n    - {name: s, type: run, config: [run]}\n"
    result = compile_text(text, file="f", registry=fake_plugins.registry(), base_dir=FIXTURES)
    assert [(d.code, d.message) for d in result.diagnostics] == [
        ("WFE011", "'config' must be a mapping, got a list")
    ]


def test_quote_hint_for_floats_and_booleans() -> None:
    result = compile_config("run: 1.10")
    (diag,) = result.diagnostics
    assert "expected a string, got number 1.1 (quote it to make it a string)" in diag.message


def test_reference_in_a_typed_field_is_left_to_run_time() -> None:
    result = compile_config('run: make\nretries: "${{ inputs.n }}"')
    assert result.ok, diags(result)
    step = result.select(None).steps[0]
    assert step.config is None
    assert step.raw_config == {"run": "make", "retries": "${{ inputs.n }}"}


def test_validators_run_with_a_locator() -> None:
    result = compile_config(
        """
        run: rm -rf /
        mounts:
          - {source: /ok, target: /b}
          - {source: rel, target: /b}
          - {source: "${{ inputs.n }}", target: /c}
        """
    )
    got = [(d.code, d.line, d.column, d.severity) for d in result.diagnostics]
    assert got == [
        ("FAKE001", 8, 9, Severity.ERROR),
        ("FAKE002", 11, 14, Severity.WARNING),
    ]


def test_validator_exception_becomes_a_diagnostic() -> None:
    result = compile_config("run: explode")
    (diag,) = result.diagnostics
    assert diag.code == "WFE053"
    assert "validator exploding of executor 'run' failed: RuntimeError: boom" in diag.message


def test_structure_config_for_the_runner() -> None:
    config = structure_config(fake_plugins.RUN, {"run": "x", "retries": "2", "tags": ["a"]})
    assert config.retries == 2
    with pytest.raises(ConfigError) as failed:
        structure_config(fake_plugins.RUN, {"run": ["x"], "retires": 1})
    assert failed.value.messages == [
        (("run",), "expected a string, got a list"),
        (("retires",), "unknown key 'retires' (did you mean 'retries'?)"),
    ]
    assert "run: expected a string" in str(failed.value)
    with pytest.raises(ConfigError):
        structure_config(fake_plugins.RUN, ["not", "a", "mapping"])  # type: ignore[arg-type]


def test_plugin_converter_is_used() -> None:
    import cattrs

    converter = cattrs.Converter()
    converter.register_structure_hook(
        fake_plugins.EmptyConfig, lambda data, _t: fake_plugins.EmptyConfig()
    )
    plugin = fake_plugins.ExecutorPlugin(
        "lenient", fake_plugins.EmptyConfig, lambda c: fake_plugins._Noop(), converter=converter
    )
    assert structure_config(plugin, {"anything": 1}) == fake_plugins.EmptyConfig()


def test_validator_yielding_garbage_is_reported() -> None:
    def bad(config: object, ctx: object) -> list[object]:
        return ["not a diagnostic"]

    plugin = fake_plugins.ExecutorPlugin(
        "bad",
        fake_plugins.EmptyConfig,
        lambda c: fake_plugins._Noop(),
        validators=(bad,),
    )
    text = "workflow:\n  id: wf\n  steps:\n    - {name: s, type: bad}\n"
    result = compile_text(
        text, file="f", registry=PluginRegistry([plugin], discover=False), base_dir=FIXTURES
    )
    (diag,) = result.diagnostics
    assert diag.code == "WFE053" and "yielded str, not a Diagnostic" in diag.message


@pytest.mark.skipif(
    importlib.util.find_spec("wfe_core.executors.shell") is None,
    reason="the shell executor is not written yet",
)
def test_real_registry_shell_type(tmp_path: Path) -> None:
    from wfe_core.compiler import compile_file

    path = tmp_path / "wf.yaml"
    path.write_text(
        "workflow:\n  id: wf\n  steps:\n"
        "    - {name: ok, type: shell, config: {run: 'echo hi'}}\n"
        "    - {name: typo, type: shell, config: {rnu: 'echo hi'}}\n"
    )
    result = compile_file(path, PluginRegistry())
    got = [d for d in result.diagnostics if d.severity is Severity.ERROR]
    assert got, "a misspelt shell key must be an error"
    assert all(d.line == 5 for d in got)
    assert any(d.code == "WFE051" and "'rnu'" in d.message for d in got)


def test_hand_made_diagnostics_get_the_file_name() -> None:
    def by_hand(config: object, ctx: object) -> list[Diagnostic]:
        return [Diagnostic("X1", "made by hand", line=2, column=3)]

    plugin = fake_plugins.ExecutorPlugin(
        "hand", fake_plugins.EmptyConfig, lambda c: fake_plugins._Noop(), validators=(by_hand,)
    )
    text = "workflow:\n  id: wf\n  steps:\n    - {name: s, type: hand}\n"
    result = compile_text(
        text, file="mine.yaml", registry=PluginRegistry([plugin], discover=False), base_dir=FIXTURES
    )
    assert [str(d) for d in result.diagnostics] == ["mine.yaml:2:3: error[X1]: made by hand"]


def test_reference_where_a_list_is_needed_is_an_error_now() -> None:
    result = compile_config('run: make\ntags: "${{ inputs.n }}"\nmounts: ["/a"]')
    got = [(d.code, d.line, d.message, d.hint) for d in result.diagnostics]
    assert got == [
        (
            "WFE050",
            9,
            "config.tags: expected a list, got string '${{ inputs.n }}' (step 's', type 'run')",
            "a ${{ ... }} reference always gives text, never a list or mapping",
        ),
        (
            "WFE050",
            10,
            "config.mounts[0]: expected a mapping, got string '/a' (step 's', type 'run')",
            None,
        ),
    ]


def test_compiling_a_shell_only_workflow_does_not_import_grpc(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "wf.yaml"
    path.write_text(
        "workflow:\n  id: wf\n  steps:\n    - {name: a, type: shell, config: {run: 'true'}}\n"
        "    - {name: b, type: nope}\n"
    )
    code = (
        "import sys\n"
        "from wfe_core.compiler import compile_file\n"
        "from wfe_core.plugins import PluginRegistry\n"
        f"result = compile_file({str(path)!r}, PluginRegistry())\n"
        "assert [d.code for d in result.diagnostics] == ['WFE023'], result.diagnostics\n"
        "assert 'grpc' not in sys.modules, 'grpc was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
