"""CLI tests: exit codes, --json shape, plain output, fast and grpc-free --help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wfe_core.cli import run_cli
from wfe_core.cli.app import build_app

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello.yaml"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def wfe(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("TERM", None)
    return subprocess.run(
        [sys.executable, "-c", "from wfe_core.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )


def write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


FAILING = """\
    workflow:
      id: failing
      version: 1
      steps:
        - name: ok
          type: shell
          config: {run: "echo fine"}
        - name: broken
          type: shell
          config: {run: "echo bad news >&2; exit 4"}
        - name: after
          type: shell
          config: {run: "true"}
    """

REQUIRED = """\
    workflow:
      id: needs
      version: 1
      inputs:
        count: {type: integer, required: true}
      steps:
        - name: show
          type: shell
          config: {run: "echo count=${{ inputs.count }}"}
    """


def test_run_hello_plain_output() -> None:
    proc = wfe("run", str(HELLO), "-i", "name=tester")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(re.match(STAMP + " ", line) for line in lines), lines
    text = proc.stdout
    assert "greet | Hello, tester!" in text
    assert "greet: succeeded in" in text
    assert "flaky: attempt 1 failed" in text
    assert re.search(r"run succeeded in \S+$", lines[-1])
    assert proc.stderr == ""


def test_run_json_shape() -> None:
    proc = wfe("run", str(HELLO), "--json", "-i", "shout=true")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "succeeded" and data["workflow"] == "hello"
    steps = data["steps"]
    assert list(steps)[:2] == ["greet", "checks"]
    greet = steps["greet"]
    assert greet["state"] == "succeeded" and greet["attempts"] == 1
    assert greet["outputs"]["greeting"] == "Hello, world!"
    assert greet["outputs"]["length"] == "13"
    assert greet["outputs"]["exit_code"] == 0
    assert isinstance(greet["duration"], float) and isinstance(greet["started_at"], float)
    assert steps["flaky"]["attempts"] == 2 and steps["flaky"]["parent"] == "checks"
    assert steps["slow-cleanup"]["role"] == "ensure"
    assert steps["shout"]["outputs"]["stdout"] == "HELLO, WORLD!\n"
    assert "greet: started" in proc.stderr  # progress moved to stderr


def test_run_json_when_skipped() -> None:
    proc = wfe("run", str(HELLO), "--json")
    data = json.loads(proc.stdout)
    assert data["steps"]["shout"]["state"] == "skipped"
    assert data["steps"]["shout"]["reason"] == "when condition is false"


def test_failed_step_exits_1(tmp_path: Path) -> None:
    proc = wfe("run", str(write(tmp_path, FAILING)))
    assert proc.returncode == 1
    assert "broken ! bad news" in proc.stdout
    assert "broken: failed after" in proc.stdout
    assert "command exited with code 4" in proc.stdout
    assert "after:" not in proc.stdout
    proc = wfe("run", str(write(tmp_path, FAILING)), "--json")
    data = json.loads(proc.stdout)
    assert data["status"] == "failed"
    assert data["steps"]["broken"]["outputs"]["exit_code"] == 4
    assert data["steps"]["after"]["state"] == "not_run"
    assert data["error"].startswith("step 'broken' failed: command exited with code 4")


def test_invalid_file_exits_2_with_diagnostics(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        workflow:
          id: bad
          version: 1
          steps:
            - name: one
              type: shell
              confg: {run: "true"}
        """,
    )
    proc = wfe("run", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert re.search(re.escape(str(path)) + r":\d+:\d+: error\[\w+\]: ", proc.stderr)
    assert "Traceback" not in proc.stderr


def test_missing_file_and_bad_arguments_exit_2(tmp_path: Path) -> None:
    proc = wfe("run", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    assert wfe("run").returncode == 2
    assert wfe("run", str(HELLO), "--jobs", "0").returncode == 2
    proc = wfe("run", str(HELLO), "-i", "novalue")
    assert proc.returncode == 2 and "-i expects KEY=VALUE" in proc.stderr
    proc = wfe("run", str(HELLO), "-i", "nmae=x")
    assert proc.returncode == 2 and "did you mean 'name'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_required_input_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED)
    proc = wfe("run", str(path))
    assert proc.returncode == 2
    assert "missing required input 'count' (integer); pass -i count=VALUE" in proc.stderr
    proc = wfe("run", str(path), "-i", "count=many")
    assert proc.returncode == 2 and "is an integer" in proc.stderr
    proc = wfe("run", str(path), "-i", "count=3", "--json")
    assert json.loads(proc.stdout)["steps"]["show"]["outputs"]["stdout"] == "count=3\n"


def test_workflow_selection(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        workflows:
          - id: one
            version: 1
            steps: [{name: a, type: shell, config: {run: "echo one"}}]
          - id: two
            version: 1
            steps: [{name: b, type: shell, config: {run: "echo two"}}]
        """,
    )
    proc = wfe("run", str(path))
    assert proc.returncode == 2 and "--workflow" in proc.stderr
    proc = wfe("run", str(path), "--workflow", "two")
    assert proc.returncode == 0 and "b | two" in proc.stdout


def test_keep_workspace(tmp_path: Path) -> None:
    proc = wfe("run", str(HELLO), "--json", "--keep-workspace", env={"TMPDIR": str(tmp_path)})
    workspace = Path(json.loads(proc.stdout)["workspace"])
    assert workspace.parent == tmp_path and (workspace / "attempted").exists()
    proc = wfe("run", str(HELLO), "--json", env={"TMPDIR": str(tmp_path)})
    assert json.loads(proc.stdout)["workspace"] is None
    assert [p.name for p in tmp_path.iterdir()] == [workspace.name]


def test_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(build_app(), ["validate", str(HELLO)])
    assert ok.exit_code == 0 and "ok (hello)" in ok.output
    bad = write(tmp_path, "workflow: {id: x}\n")
    result = runner.invoke(build_app(), ["validate", str(HELLO), str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:" in result.output


def test_plugins_lists_shell() -> None:
    proc = wfe("plugins")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("shell "))
    assert "wfe-core" in line and "sh -c" in line
    assert proc.stdout.splitlines()[0].split() == ["TYPE", "DISTRIBUTION", "VERSION", "DESCRIPTION"]


def test_run_cli_in_process_returns_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["run", str(write(tmp_path, FAILING))]) == 1
    assert run_cli(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert run_cli(["--help"]) == 0
    assert "Usage: wfe" in capsys.readouterr().out


def _modules_after(*args: str) -> set[str]:
    code = (
        "import sys\nfrom wfe_core.cli import run_cli\n"
        f"code = run_cli({list(args)!r})\n"
        "sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = proc.stderr.rsplit("MODULES ", 1)[1]
    return set(line.split())


def test_help_imports_no_grpc_and_no_plugins() -> None:
    modules = _modules_after("--help")
    assert not {m for m in modules if m.split(".")[0] in ("grpc", "google")}
    assert not {
        m
        for m in modules
        if m.startswith(
            ("wfe_buildkit", "wfe_containerd", "rich", "wfe_core.runner", "wfe_core.compiler")
        )
    }


def test_validate_shell_workflow_imports_no_grpc() -> None:
    modules = _modules_after("validate", str(HELLO))
    assert not {m for m in modules if m.split(".")[0] == "grpc"}


def test_help_with_importtime_has_no_grpc() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "from wfe_core.cli import main; main(['--help'])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert imported and not [m for m in imported if m.startswith("grpc")]


def test_schema_and_graph() -> None:
    runner = CliRunner()
    full = runner.invoke(build_app(), ["schema"])
    assert full.exit_code == 0
    schema = json.loads(full.stdout)
    assert any("ShellConfig" in key for key in schema["$defs"])
    one = runner.invoke(build_app(), ["schema", "shell"])
    assert one.exit_code == 0 and "run" in json.loads(one.stdout)["properties"]
    assert runner.invoke(build_app(), ["schema", "no-such-type"]).exit_code == 2
    mermaid = runner.invoke(build_app(), ["graph", str(HELLO)])
    assert mermaid.exit_code == 0 and mermaid.stdout.startswith("flowchart")
    dot = runner.invoke(build_app(), ["graph", str(HELLO), "--format", "dot"])
    assert dot.exit_code == 0 and dot.stdout.startswith("digraph")
    assert runner.invoke(build_app(), ["graph", str(HELLO), "--format", "png"]).exit_code == 2


def test_gc_without_hooks_is_fine() -> None:
    proc = wfe("gc")
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
