"""Tests for the built-in shell executor, run through the real runner."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.harness.processes import non_harness_children
from wfe_core.compiler.config import ConfigError, structure_config
from wfe_core.contracts import ExecutorPlugin, ValidationContext
from wfe_core.executors import shell
from wfe_core.executors.shell import ShellConfig, ShellStep
from wfe_core.model import Location, Step, Workflow
from wfe_core.plugins import PluginRegistry
from wfe_core.process_output import STREAM_CAP_BYTES
from wfe_core.runner import RunOptions, RunResult, StepLog, StepState, run_workflow

LOC = Location("test.yaml", 1, 1)


def sh(name: str, step_timeout: float | None = None, **config: Any) -> Step:
    return Step(
        name,
        LOC,
        type="shell",
        config=ShellConfig(**config),
        raw_config=config,
        timeout=step_timeout,
    )


def run(
    *steps: Step,
    grace: float = 5.0,
    events: list[Any] | None = None,
    base_dir: Path | None = None,
    **options: Any,
) -> RunResult:
    plugin = shell.plugin
    if grace != 5.0:
        plugin = ExecutorPlugin("shell", ShellConfig, lambda c: ShellStep(c, grace=grace))
    registry = PluginRegistry([plugin], discover=False)
    wf = Workflow("wf", LOC, tuple(steps))
    sink = events.append if events is not None else None
    return asyncio.run(
        run_workflow(wf, registry, on_event=sink, base_dir=base_dir, options=RunOptions(**options))
    )


def test_streams_and_outputs() -> None:
    events: list[Any] = []
    script = (
        "echo out1; echo err1 >&2; echo '##wfe[output from_line=1]';"
        "echo '##wfe[output both=line]';"
        "echo 'from_file=2' >> \"$WFE_OUTPUT\";"
        "printf 'both=file\\nmulti<<E\\na\\nb\\nE\\n' >> $WFE_OUTPUT"
    )
    result = run(sh("s", run=script), events=events)
    step = result.step("s")
    assert step.state is StepState.SUCCEEDED, step.error
    out = step.outputs
    assert out["exit_code"] == 0
    assert out["stdout"] == "out1\n##wfe[output from_line=1]\n##wfe[output both=line]\n"
    assert out["stderr"] == "err1\n"
    assert (out["from_line"], out["from_file"], out["both"], out["multi"]) == (
        "1",
        "2",
        "file",
        "a\nb",
    )
    logs = [(e.stream, e.text) for e in events if isinstance(e, StepLog)]
    assert "".join(t for s, t in logs if s == "stdout").startswith("out1\n")
    assert ("stderr", "err1\n") in logs


def test_command_env_and_working_dir(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    step = sh(
        "c",
        command=["sh", "-c", 'echo "$GREETING $(pwd)"'],
        env={"GREETING": "hi"},
        working_dir="sub",
    )
    result = run(step, base_dir=tmp_path)
    assert result.step("c").outputs["stdout"] == f"hi {tmp_path / 'sub'}\n"


def test_default_working_dir_is_the_workspace(tmp_path: Path) -> None:
    result = run(sh("w", run='pwd; echo "$WFE_WORKSPACE"'), workspace_root=tmp_path)
    first, second = str(result.step("w").outputs["stdout"]).splitlines()
    assert first == second and Path(first).parent == tmp_path


def test_stdout_is_capped() -> None:
    result = run(sh("big", run="head -c 3000000 /dev/zero | tr '\\0' x; echo; echo end"))
    stdout = str(result.step("big").outputs["stdout"])
    assert stdout.startswith("[wfe: ")
    assert stdout.endswith("x\nend\n")
    assert len(stdout.encode()) < STREAM_CAP_BYTES + 100


def test_failure_message_has_exit_code_and_stderr_tail() -> None:
    script = "for i in $(seq 1 30); do echo line$i >&2; done; echo '##wfe[output k=v]'; exit 3"
    result = run(sh("f", run=script))
    step = result.step("f")
    assert step.state is StepState.FAILED
    assert step.error is not None
    assert step.error.startswith("command exited with code 3\nlast lines of stderr:\n")
    assert "  line30" in step.error and "line21" in step.error and "line20\n" not in step.error
    assert step.outputs["exit_code"] == 3 and step.outputs["k"] == "v"


def test_missing_command_is_a_clean_failure() -> None:
    result = run(sh("m", command=["/no/such/program"]))
    assert result.step("m").error == "cannot start '/no/such/program': No such file or directory"


def _pids(path: Path) -> list[int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= 2:
            break
        time.sleep(0.02)
    return [int(p) for p in path.read_text().split()]


def _gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = [
            p
            for p in pids
            if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("where", ["config", "step"])
def test_timeout_kills_the_process_group(tmp_path: Path, where: str) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pidfile}; echo $$ >> {pidfile}; wait"
    if where == "config":
        step = sh("t", run=script, timeout=0.3)
    else:
        step = sh("t", step_timeout=0.3, run=script)
    t0 = time.monotonic()
    result = run(step)
    assert time.monotonic() - t0 < 4
    state = result.step("t").state
    assert state is (StepState.FAILED if where == "config" else StepState.TIMED_OUT)
    if where == "config":
        assert (result.step("t").error or "").startswith("timed out after 0.3s")
    assert _gone(_pids(pidfile))


def test_sigkill_after_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = (
        f"trap '' TERM; echo $$ > {pidfile}; echo $$ >> {pidfile}; while :; do sleep 0.05; done"
    )
    t0 = time.monotonic()
    result = run(sh("k", run=script, timeout=0.2), grace=0.3)
    assert time.monotonic() - t0 < 3
    assert result.step("k").state is StepState.FAILED
    assert _gone(_pids(pidfile))


def test_background_leftovers_are_terminated(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pidfile}; echo $! >> {pidfile}; echo done"
    t0 = time.monotonic()
    result = run(sh("b", run=script))
    assert time.monotonic() - t0 < 3
    assert result.step("b").state is StepState.SUCCEEDED
    assert _gone(_pids(pidfile))


def test_cancellation_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pidfile}; echo $$ >> {pidfile}; wait"
    registry = PluginRegistry([shell.plugin], discover=False)
    wf = Workflow("wf", LOC, (sh("c", run=script),))

    async def main() -> RunResult:
        from wfe_core.runner import Run

        runner = Run(wf, registry)
        task = asyncio.create_task(runner.execute())
        while not pidfile.exists() or pidfile.read_text().count("\n") < 2:
            await asyncio.sleep(0.02)
        runner.cancel()
        return await task

    result = asyncio.run(main())
    assert result.step("c").state is StepState.CANCELLED
    assert _gone(_pids(pidfile))


def test_output_file_is_fresh_per_attempt(tmp_path: Path) -> None:
    result = run(
        sh("a", run='cat "$WFE_OUTPUT"; echo x=1 >> "$WFE_OUTPUT"'),
        sh("b", run='cat "$WFE_OUTPUT"; test ! -s "$WFE_OUTPUT"'),
    )
    assert result.ok
    assert result.step("b").outputs["stdout"] == ""


def _validate(**config: Any) -> list[str]:
    ctx = ValidationContext("f.yaml", "wf", "s", Path("."))
    return [d.code for d in shell.validate(ShellConfig(**config), ctx)]


def test_validator() -> None:
    assert _validate(run="true") == []
    assert _validate() == ["SHELL001"]
    assert _validate(run="a", command=["b"]) == ["SHELL002"]
    assert _validate(command=[]) == ["SHELL003"]
    assert _validate(run="x", env={"A=B": "1"}) == ["SHELL004"]
    assert _validate(run="x", timeout=0) == ["SHELL005"]


def test_config_structuring_parses_durations() -> None:
    config = structure_config(shell.plugin, {"run": "x", "timeout": "1m30s"})
    assert config.timeout == 90.0
    assert structure_config(shell.plugin, {"command": ["a", 1], "timeout": 2}).timeout == 2.0
    with pytest.raises(ConfigError) as err:
        structure_config(shell.plugin, {"run": "x", "timeout": "soon", "colour": 1})
    text = str(err.value)
    assert "invalid duration" in text and "unknown key 'colour'" in text


def test_no_leftover_children() -> None:
    run(sh("x", run="true"))
    # The harness daemons of this pytest session are children too; they are not ours.
    assert non_harness_children() == []


def _processes_of_run(run_id: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("WFE_RUN_ID") == run_id:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.parametrize("delay", [0.0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.05])
def test_cancel_at_any_moment_leaves_nothing(delay: float) -> None:
    """Cancellation landing during the spawn itself must neither hang nor leak (a background
    child holding the pipes used to make asyncio's own cleanup wait forever)."""
    from wfe_core.runner import Run

    registry = PluginRegistry([shell.plugin], discover=False)
    wf = Workflow("wf", LOC, (sh("c", run="sleep 60 & sleep 60 & wait"),))
    runner = Run(wf, registry, options=RunOptions(run_id=f"cancel-{delay}-{os.getpid()}"))

    async def main() -> RunResult:
        task = asyncio.create_task(runner.execute())
        await asyncio.sleep(delay)
        runner.cancel()
        async with asyncio.timeout(15):
            return await task

    result = asyncio.run(main())
    assert result.status.value == "cancelled"
    deadline = time.monotonic() + 5
    while _processes_of_run(runner.run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_of_run(runner.run_id) == []
