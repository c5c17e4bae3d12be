"""The labels wfe puts on everything it creates in containerd, and how to tell if the owner lives.

Each container, snapshot and lease carries the run id, the step name, and the pid, start time and
host of the creating process. ``wfe gc`` treats an object as a leftover when that process no
longer exists on this host (a pid alone could have been reused, hence the start time).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

PREFIX = "wfe."
RUN = "wfe.run-id"
STEP = "wfe.step"
PID = "wfe.pid"
PID_START = "wfe.pid-start"
HOST = "wfe.host"
MAX_VALUE = 1024


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def owner_labels(run_id: str = "", step: str = "") -> dict[str, str]:
    """Labels naming the run, the step and this process."""
    pid = os.getpid()
    labels = {
        PID: str(pid),
        PID_START: process_start_time(pid) or "",
        HOST: socket.gethostname(),
    }
    if run_id:
        labels[RUN] = run_id[:MAX_VALUE]
    if step:
        labels[STEP] = step[:MAX_VALUE]
    return labels


def owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the process that created an object with these labels still runs.

    Objects created on another host are assumed alive: we cannot check, so we never touch them.
    """
    if labels.get(HOST, socket.gethostname()) != socket.gethostname():
        return True
    pid_text = labels.get(PID, "")
    if not pid_text.isdigit():
        return False
    started = process_start_time(int(pid_text))
    if started is None:
        return False
    expected = labels.get(PID_START)
    return not expected or expected == started
