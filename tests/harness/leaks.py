"""What a stopped harness may have left behind: processes, mounts, sockets, its directory.

Used by the leak tests and by ``python -m tests.harness down`` callers that want to verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import processes
from .mounts import mounts_under


@dataclass
class Leftovers:
    """Everything of one harness that still exists; empty means a clean stop."""

    processes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    directory: str | None = None

    def __bool__(self) -> bool:
        return bool(self.processes or self.mounts or self.sockets or self.cgroups or self.directory)


def leftovers(
    base: Path,
    *,
    pids: Sequence[int] = (),
    sockets: Sequence[Path] = (),
    cgroups: Sequence[Path] = (),
) -> Leftovers:
    """Check ``base`` and the PIDs, sockets and cgroups collected while the harness ran."""
    found = Leftovers()
    for proc in processes.processes_mentioning(str(base)):
        try:
            found.processes.append(f"{proc.pid} {' '.join(proc.cmdline())}")
        except Exception:
            continue
    for pid in pids:
        if processes.pid_alive(pid):
            found.processes.append(f"{pid} (recorded at startup)")
    found.mounts = mounts_under(base)
    found.sockets = [str(s) for s in sockets if s.exists()]
    found.cgroups = [str(c) for c in cgroups if c.exists()]
    if base.exists():
        found.directory = str(base)
    return found
