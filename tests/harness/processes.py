"""Starting daemons, waiting for them, and stopping them by PID.

Daemons run in their own session (so a Ctrl-C in the terminal reaches only the test process, which
then tears them down in order) with stdout/stderr appended to a log file. When the harness lives
inside a test process, children also get ``PR_SET_PDEATHSIG`` so they die if that process is
killed outright; ``python -m tests.harness up`` leaves that off, since its daemons outlive it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]

_PR_SET_PDEATHSIG = 1


def _pdeathsig_preexec() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    tie_to_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with its output appended to ``log_path``; returns immediately.

    ``tie_to_parent`` only takes effect on the main thread: the kernel delivers the parent-death
    signal when the *thread* that forked exits, which for a worker thread is far too early.
    """
    tie_to_parent = tie_to_parent and threading.current_thread() is threading.main_thread()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_pdeathsig_preexec if tie_to_parent else None,
        )


def tail(path: Path | str, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ('' when absent), for failure messages."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    text = data[-64 * 1024 :].decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    ready: Callable[[], bool],
    *,
    deadline_s: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log_path: Path | None = None,
) -> float:
    """Poll ``ready`` until it returns True; returns the seconds waited.

    Raises RuntimeError (with the daemon's log tail) when the deadline passes or when ``alive``
    says the process has died.
    """
    start = time.monotonic()
    delay = 0.02
    while True:
        with contextlib.suppress(Exception):
            if ready():
                return time.monotonic() - start
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited during startup" + _log_suffix(log_path))
        if time.monotonic() - start > deadline_s:
            raise RuntimeError(f"{what} not ready after {deadline_s:.0f} s" + _log_suffix(log_path))
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _log_suffix(log_path: Path | None) -> str:
    if log_path is None:
        return ""
    return f"\n--- {log_path} (tail) ---\n{tail(log_path)}"


def is_harness_process(proc: psutil.Process) -> bool:
    """True for a harness daemon or anything below one (their command lines name a harness dir).

    Tests that assert "no child processes left" must ignore these: the session's daemons are
    children of the test process.
    """
    from .paths import DIR_PREFIX

    try:
        chain = [proc, *proc.parents()]
        return any(f"/{DIR_PREFIX}" in " ".join(p.cmdline()) for p in chain)
    except psutil.Error:
        return False


def non_harness_children(pid: int | None = None) -> list[psutil.Process]:
    """Live descendants of ``pid`` (default: this process) that are not harness daemons."""
    return [
        p
        for p in descendants(os.getpid() if pid is None else pid)
        if not is_harness_process(p) and not _is_zombie(p)
    ]


def _is_zombie(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def descendants(pid: int) -> list[psutil.Process]:
    """All live descendants of ``pid`` (empty when it is gone)."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Processes whose command line or cwd contains ``text`` (e.g. the harness temp dir).

    This is how shims are found: containerd-shim-runc-v2 re-parents itself away from containerd
    but keeps ``-address <our socket>`` on its command line.
    """
    found: list[psutil.Process] = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] == me:
            continue
        cmdline = proc.info.get("cmdline") or []
        hit = any(text in part for part in cmdline)
        if not hit:
            with contextlib.suppress(psutil.Error):
                hit = proc.cwd().startswith(text)
        if hit:
            found.append(proc)
    return found


def terminate(procs: Iterable[psutil.Process], *, grace_s: float = 5.0) -> None:
    """SIGTERM every process, wait up to ``grace_s``, SIGKILL the survivors, reap."""
    procs = [p for p in procs if p.pid != os.getpid()]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    kill(wait_gone(procs, timeout=grace_s))


def kill(procs: Iterable[psutil.Process]) -> None:
    """SIGKILL every process and wait briefly for it to disappear."""
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    wait_gone(procs, timeout=5.0)


def _gone(proc: psutil.Process) -> bool:
    """Exited: vanished, or a zombie (reaped here if it is our child, else by its parent).

    Zombies count as gone because an orphan's reaper (PID 1) may take seconds to collect it.
    """
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(proc.pid, os.WNOHANG)
    try:
        return bool(not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def wait_gone(procs: Iterable[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; returns those still alive after ``timeout``."""
    pending = list(procs)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while pending:
        pending = [p for p in pending if not _gone(p)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return pending


def stop_pid(pid: int, *, grace_s: float = 5.0) -> None:
    """Stop one daemon by PID and everything it started (children first collected, then killed)."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    children = descendants(pid)
    terminate([root], grace_s=grace_s)
    kill(p for p in children if p.is_running())
