"""The built-in ``shell`` executor: run a command on the host, stream its output, collect outputs.

It is registered through wfe-core's own ``wfe.executors`` entry point (``shell =
wfe_core.executors.shell:plugin``), exactly like third-party executors, so every run exercises
the plugin mechanism.

Config (see :class:`ShellConfig`): ``run`` (a script for ``sh -c``) or ``command`` (an argv
list), exactly one; ``env`` (added to the inherited environment); ``working_dir`` (default: the
run's workspace; relative paths resolve against the workflow file's directory); ``timeout`` (a
duration such as ``30s``, or seconds; the step-level ``timeout:`` bounds the whole attempt too).

The process also gets ``WFE_OUTPUT`` (a fresh, empty file in the workspace for ``key=value``
outputs), ``WFE_WORKSPACE``, ``WFE_RUN_ID`` and ``WFE_STEP``. Outputs follow
:mod:`wfe_core.process_output`: ``exit_code``, ``stdout``, ``stderr`` (each stream capped at
1 MiB, tail kept), ``##wfe[output k=v]`` lines and the ``$WFE_OUTPUT`` file.

Process lifetime: the command runs in its own session and process group, so that everything it
starts can be signalled together. On timeout or cancellation (Ctrl-C, a failed sibling) the
group gets SIGTERM, then SIGKILL after :data:`GRACE_SECONDS`. When the command exits normally,
processes it left running in the background are terminated the same way: a step never leaves
orphans behind (and their open pipes would otherwise keep the step from ending).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NewType

import attrs
import cattrs

from wfe_core.cancellation import run_to_completion, wait_through_cancellation
from wfe_core.compiler.config import ConfigValueError, default_converter
from wfe_core.compiler.durations import DurationError, parse_duration
from wfe_core.contracts import (
    Diagnostic,
    ExecutionResult,
    ExecutorPlugin,
    StepBody,
    StepContext,
    StepFailed,
    ValidationContext,
    has_reference,
    resolve_config_path,
)
from wfe_core.process_output import OutputCapture, process_outputs

GRACE_SECONDS = 5.0
"""How long a terminated process group gets between SIGTERM and SIGKILL."""

STDERR_LINES_IN_MESSAGE = 10
"""How many trailing stderr lines a failure message quotes."""

DRAIN_SECONDS = 5.0
"""How long to keep reading output after the process group is gone (only processes that left
the group can hold the pipes open that long)."""

_READ_SIZE = 64 * 1024

_LIVE_GROUPS: set[int] = set()
"""Process groups of running shell steps, for :func:`kill_live_groups`."""

Seconds = NewType("Seconds", float)
"""A duration in seconds, written in YAML as ``30s``/``500ms``/``2m`` or a number."""


@attrs.frozen
class ShellConfig:
    """``config:`` of a ``shell`` step.

    Exactly one of ``run`` (a shell script, run with ``sh -c``) and ``command`` (an argv list,
    no shell involved) must be given.
    """

    run: str | None = None
    command: list[str] | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    working_dir: str | None = None
    timeout: Seconds | None = None


def _structure_seconds(value: Any, _type: Any) -> Seconds:
    try:
        return Seconds(parse_duration(value))
    except DurationError as exc:
        raise ConfigValueError(str(exc)) from None


def _converter() -> cattrs.Converter:
    converter = default_converter()
    converter.register_structure_hook(Seconds, _structure_seconds)
    return converter


def validate(config: ShellConfig, ctx: ValidationContext) -> Iterable[Diagnostic]:
    """Exactly one of run/command; a non-empty command; sane env names; a positive timeout."""
    if config.run is None and config.command is None:
        yield ctx.error("SHELL001", "give either 'run' (a script) or 'command' (a list)")
    elif config.run is not None and config.command is not None:
        yield ctx.error(
            "SHELL002",
            "give only one of 'run' and 'command', not both",
            "command",
            hint="'run' is a script for sh -c; 'command' is an argument list run without a shell",
        )
    if config.command is not None and not config.command:
        yield ctx.error("SHELL003", "'command' must not be empty", "command")
    if config.run is not None and not config.run.strip():
        yield ctx.error("SHELL003", "'run' must not be empty", "run")
    for name in config.env:
        if not name or "=" in name or "\0" in name:
            yield ctx.error("SHELL004", f"invalid environment variable name {name!r}", "env", name)
    if config.timeout is not None and config.timeout <= 0:
        yield ctx.error("SHELL005", "'timeout' must be longer than zero", "timeout")
    if config.working_dir is not None and not has_reference(config.working_dir):
        path = resolve_config_path(ctx.base_dir, config.working_dir)
        if path.exists() and not path.is_dir():
            yield ctx.error(
                "SHELL006", f"working_dir {str(path)!r} is not a directory", "working_dir"
            )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count: orphans are reaped
    by PID 1, which in some containers only does so every few seconds."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def wait_exit(process: asyncio.subprocess.Process) -> None:
    """Return when the process has exited, without reaping it and without waiting for its
    pipes to close (``Process.wait()`` waits for both, so a background child that inherited
    stdout would keep it waiting). Uses a pidfd where the kernel has them, else polls."""
    if process.returncode is not None:
        return
    try:
        fd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return
    except (OSError, AttributeError):
        await _poll_exit(process)
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _poll_exit(process: asyncio.subprocess.Process) -> None:
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    while process.returncode is None:
        try:
            if os.waitid(os.P_PID, process.pid, flags) is not None:
                return
        except ChildProcessError:
            return
        await asyncio.sleep(0.02)


async def terminate_group(
    process: asyncio.subprocess.Process, grace: float = GRACE_SECONDS
) -> None:
    """SIGTERM the process group, wait up to ``grace`` for it to go, then SIGKILL what is left.
    Cheap when the group is already gone (the usual case after a normal exit)."""
    pgid = process.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    leader_gone = True
    try:
        async with asyncio.timeout(grace):
            await wait_exit(process)
    except TimeoutError:
        leader_gone = False
    while _group_alive(pgid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if not leader_gone or _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)


def kill_live_groups() -> None:
    """SIGKILL every process group a shell step of this process is running.

    For a forced exit (a second Ctrl-C) only: the normal path terminates each group through
    the step's own cancellation, gracefully."""
    for pgid in list(_LIVE_GROUPS):
        _signal_group(pgid, signal.SIGKILL)
    _LIVE_GROUPS.clear()


async def _spawn(
    argv: list[str], cwd: Path, env: dict[str, str], capture: OutputCapture
) -> tuple[asyncio.subprocess.Process, bool]:
    """Start ``argv`` in a new session (its own process group); also return whether the step
    was cancelled meanwhile, for the caller to re-raise once it has cleaned the group up.

    The spawn is shielded: cancelling asyncio's spawn midway makes it kill only the leader and
    then wait for the pipes to close, which a background child keeps open forever (Python
    3.11). So it is let finish, and the caller then ends the whole group itself.
    """
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    )
    cancelled = await wait_through_cancellation(spawn)
    try:
        return spawn.result(), cancelled
    except OSError as exc:
        if cancelled:
            raise asyncio.CancelledError from None
        reason = exc.strerror or str(exc)
        raise StepFailed(
            f"cannot start {argv[0]!r}: {reason}", outputs=process_outputs(capture, None)
        ) from None


async def _pump(
    stream: asyncio.StreamReader | None, name: str, capture: OutputCapture, ctx: StepContext
) -> None:
    """Read one of the process's pipes to its end into ``capture`` and the step log."""
    if stream is None:
        return
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        data = await stream.read(_READ_SIZE)
        text = decoder.decode(data, final=not data)
        if text:
            capture.feed(name, text)
            ctx.log(name, text)
        if not data:
            return


class ShellStep(StepBody):
    """One execution of a shell step."""

    def __init__(self, config: ShellConfig, grace: float = GRACE_SECONDS) -> None:
        self.config = config
        self.grace = grace

    def argv(self) -> list[str]:
        if self.config.run is not None:
            return ["sh", "-c", self.config.run]
        return list(self.config.command or [])

    async def run(self, ctx: StepContext) -> ExecutionResult:
        config = self.config
        argv = self.argv()
        if not argv:
            raise StepFailed("nothing to run: give 'run' or a non-empty 'command'")
        cwd = ctx.resolve_path(config.working_dir) if config.working_dir else ctx.workspace
        capture = OutputCapture()
        if not cwd.is_dir():
            raise StepFailed(
                f"working_dir {str(cwd)!r} does not exist or is not a directory",
                outputs=process_outputs(capture, None),
            )
        output_dir = ctx.workspace / ".wfe" / "outputs"
        output_dir.mkdir(parents=True, exist_ok=True)
        safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", ctx.step_name)[:64]
        output_file = output_dir / f"{safe_name}.{ctx.attempt}.{secrets.token_hex(4)}"
        output_file.touch(mode=0o600)
        env = dict(os.environ)
        env.update(config.env)
        env.update(
            WFE_OUTPUT=str(output_file),
            WFE_WORKSPACE=str(ctx.workspace),
            WFE_RUN_ID=ctx.run_id,
            WFE_STEP=ctx.step_name,
        )
        try:
            return await self._execute(ctx, argv, cwd, env, capture, output_file)
        finally:
            output_file.unlink(missing_ok=True)

    async def _execute(
        self,
        ctx: StepContext,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        capture: OutputCapture,
        output_file: Path,
    ) -> ExecutionResult:
        process, cancelled = await _spawn(argv, cwd, env, capture)
        _LIVE_GROUPS.add(process.pid)
        pumps = asyncio.gather(
            _pump(process.stdout, "stdout", capture, ctx),
            _pump(process.stderr, "stderr", capture, ctx),
        )
        timeout = self.config.timeout
        timed_out = False
        try:
            if cancelled:
                raise asyncio.CancelledError
            if timeout is None:
                await wait_exit(process)
            else:
                try:
                    async with asyncio.timeout(timeout):
                        await wait_exit(process)
                except TimeoutError:
                    timed_out = True
            await self._reap(process, pumps)
        except BaseException:
            await run_to_completion(self._reap(process, pumps))
            raise
        return self._result(process.returncode, timed_out, capture, output_file)

    def _result(
        self, code: int | None, timed_out: bool, capture: OutputCapture, output_file: Path
    ) -> ExecutionResult:
        """The outputs of the reaped process, or :class:`StepFailed` carrying them."""
        if code is None:  # not reaped in time (see _reap); report what we know
            raise StepFailed(
                "the process could not be reaped", outputs=process_outputs(capture, None)
            )
        exit_code = 128 - code if code < 0 else code
        outputs = process_outputs(capture, exit_code, output_file)
        if timed_out:
            raise StepFailed(
                f"timed out after {self.config.timeout:g}s; the process group was terminated"
                + self._stderr_tail(capture),
                outputs=outputs,
            )
        if code != 0:
            how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
            raise StepFailed(f"command {how}" + self._stderr_tail(capture), outputs=outputs)
        return ExecutionResult(outputs=outputs)

    async def _reap(self, process: asyncio.subprocess.Process, pumps: asyncio.Future[Any]) -> None:
        """End the process group (leftovers included), read the rest of the output, reap."""
        await terminate_group(process, self.grace)
        _LIVE_GROUPS.discard(process.pid)
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await pumps
                await process.wait()
        except TimeoutError:
            # Something outside the group (it called setsid) still holds our pipes: stop
            # reading. Closing the transport is the only way asyncio offers to drop the pipes.
            pumps.cancel()
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(1):
                    await process.wait()

    @staticmethod
    def _stderr_tail(capture: OutputCapture) -> str:
        tail = capture.tail("stderr", STDERR_LINES_IN_MESSAGE).rstrip()
        if not tail:
            return ""
        indented = "\n".join("  " + line for line in tail.splitlines())
        return f"\nlast lines of stderr:\n{indented}"


plugin = ExecutorPlugin(
    name="shell",
    config_type=ShellConfig,
    create=ShellStep,
    validators=(validate,),
    description="Run a command on the host with sh -c (or an argv list)",
    converter=_converter(),
)

__all__ = [
    "GRACE_SECONDS",
    "Seconds",
    "ShellConfig",
    "ShellStep",
    "kill_live_groups",
    "plugin",
    "terminate_group",
    "validate",
]
