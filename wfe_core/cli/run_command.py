"""``wfe run``: compile, check inputs, run with a progress display, handle Ctrl-C, exit code.

Where output goes: without ``--json`` the progress display writes to stdout (a live tree on a
terminal, timestamped lines otherwise). With ``--json`` stdout carries exactly one JSON object
and the progress display moves to stderr. Diagnostics and user errors always go to stderr.

Ctrl-C (or SIGTERM) cancels the running steps; their cleanup and ``ensure`` steps still run,
the workspace is removed, and the exit code is 130. A second Ctrl-C forces the exit: running
shell process groups are killed and the workspace removed, without waiting for ``ensure``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from wfe_core.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from wfe_core.cli.diagnostics import print_diagnostics, print_error
from wfe_core.contracts import JSONValue, workflow_base_dir
from wfe_core.model import Workflow
from wfe_core.runner import RunEvent, RunResult, RunStatus, run_result_to_json
from wfe_core.runner.engine import Run

if TYPE_CHECKING:
    from wfe_core.plugins import PluginRegistry


class Display(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def note(self, message: str) -> None: ...
    def handle(self, event: RunEvent) -> None: ...
    async def animate(self) -> None: ...


def parse_input_pairs(pairs: Sequence[str]) -> tuple[dict[str, JSONValue], list[str]]:
    """``["tag=v1", "n=3"]`` → ``{"tag": "v1", "n": "3"}``, plus problems for malformed ones."""
    values: dict[str, JSONValue] = {}
    problems: list[str] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"-i expects KEY=VALUE, got {pair!r}")
            continue
        if key in values:
            problems.append(f"input {key!r} given twice")
        values[key] = value
    return values, problems


def is_terminal(stream: TextIO) -> bool:
    """Whether to draw a live display on ``stream`` (a TTY, and ``TERM`` is not ``dumb``)."""
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


def make_display(workflow: Workflow, stream: TextIO) -> Display:
    if is_terminal(stream):
        from wfe_core.cli.live_display import LiveDisplay

        return LiveDisplay(workflow, stream)
    from wfe_core.cli.plain_display import PlainDisplay

    return PlainDisplay(workflow, stream)


def run_command(
    file: Path,
    input_pairs: Sequence[str],
    workflow_id: str | None,
    jobs: int | None,
    as_json: bool,
    keep_workspace: bool,
) -> int:
    """``wfe run``: returns the exit code (0, 1 a step failed, 2 invalid input, 130 interrupted)."""
    from wfe_core.plugins import PluginRegistry
    from wfe_core.runner import RunOptions, default_jobs

    registry = PluginRegistry()
    prepared = _prepare(file, input_pairs, workflow_id, registry)
    if prepared is None:
        return EXIT_INVALID
    workflow, inputs = prepared
    display = make_display(workflow, sys.stderr if as_json else sys.stdout)
    options = RunOptions(jobs=jobs or default_jobs(), keep_workspace=keep_workspace)
    run = Run(
        workflow,
        registry,
        inputs=inputs,
        base_dir=workflow_base_dir(file),
        options=options,
        on_event=display.handle,
    )
    display.start()
    try:
        result = asyncio.run(_drive(run, display))
    finally:
        display.stop()
    if as_json:
        sys.stdout.write(json.dumps(run_result_to_json(result), indent=2, default=str) + "\n")
        sys.stdout.flush()
    if result.status is RunStatus.CANCELLED:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


def _prepare(
    file: Path, input_pairs: Sequence[str], workflow_id: str | None, registry: PluginRegistry
) -> tuple[Workflow, dict[str, JSONValue]] | None:
    """The workflow to run and its typed inputs; None after printing every problem found
    (diagnostics of the file, or all input problems at once)."""
    from wfe_core.compiler import CompileError, compile_file
    from wfe_core.runner import InputError, prepare_inputs

    compiled = compile_file(file, registry)
    print_diagnostics(compiled.diagnostics)
    if not compiled.ok:
        return None
    try:
        workflow = compiled.select(workflow_id)
    except CompileError as exc:
        print_diagnostics(exc.diagnostics)
        return None
    given, problems = parse_input_pairs(input_pairs)
    if not problems:
        try:
            return workflow, prepare_inputs(workflow, given)
        except InputError as exc:
            problems = exc.problems
    for problem in problems:
        print_error(problem)
    return None


async def _drive(run: Run, display: Display) -> RunResult:
    loop = asyncio.get_running_loop()
    interrupts = 0

    def interrupted() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            display.note(
                "interrupted: cancelling running steps and waiting for their cleanup and ensure "
                "steps (press Ctrl-C again to force)"
            )
            run.cancel()
        else:
            _force_exit(run)

    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, interrupted)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    animation = asyncio.create_task(display.animate())
    try:
        return await run.execute()
    finally:
        animation.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)


def _force_exit(run: Run) -> None:
    """Second Ctrl-C: kill what is running, remove the workspace, exit 130 immediately."""
    from wfe_core.runner.workspace import remove_workspace

    shell = sys.modules.get("wfe_core.executors.shell")
    if shell is not None:
        shell.kill_live_groups()
    if run.workspace is not None and not run.options.keep_workspace:
        remove_workspace(run.workspace)
    sys.stderr.write("\nwfe: forced exit; ensure steps were not waited for\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


__all__ = ["is_terminal", "make_display", "parse_input_pairs", "run_command"]
