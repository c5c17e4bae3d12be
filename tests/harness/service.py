"""The lifecycle shared by every harness daemon: spawn, wait until ready, stop by PID.

A service is described by plain data (``info``: addresses and paths, JSON-serialisable, what the
fixtures hand to tests and what the state file stores), so a second process can reuse daemons
that ``python -m tests.harness up`` started.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from . import processes


class Service(ABC):
    """One daemon under the harness directory."""

    #: Key in the state file and name in messages.
    name: str = "service"
    #: Seconds allowed from spawn to ready.
    deadline_s: float = 20.0

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dir = base / self.name
        self.log_path = base / "logs" / f"{self.name}.log"
        self.pid: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_after = 0.0

    @abstractmethod
    def argv(self) -> list[str]:
        """Command line; called after :meth:`prepare`."""

    def prepare(self) -> None:
        """Write config files and create directories before spawning."""
        self.dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def is_ready(self) -> bool:
        """One readiness probe (may raise; exceptions count as not ready)."""

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Addresses and paths for tests and for the state file."""

    def spawn(self, *, tie_to_parent: bool) -> None:
        """Start the process (returns at once); see :func:`processes.spawn` for threading rules."""
        self.prepare()
        self.started_at = time.monotonic()
        self.proc = processes.spawn(self.argv(), self.log_path, tie_to_parent=tie_to_parent)
        self.pid = self.proc.pid

    def wait_ready(self) -> float:
        """Block until ready or raise with the log tail; returns seconds since spawn."""
        assert self.pid is not None, "spawn() first"
        pid = self.pid
        processes.wait_until(
            self.is_ready,
            deadline_s=self.deadline_s,
            what=f"{self.name} (pid {pid})",
            alive=lambda: self.proc.poll() is None if self.proc else processes.pid_alive(pid),
            log_path=self.log_path,
        )
        self.ready_after = time.monotonic() - self.started_at
        return self.ready_after

    def stop(self) -> None:
        """Stop by PID: SIGTERM, SIGKILL after a grace period, children included."""
        if self.pid is not None:
            processes.stop_pid(self.pid)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                self.proc.wait(timeout=1)
