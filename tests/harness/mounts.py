"""Finding and undoing mounts that daemons leave under the harness directory.

containerd mounts container rootfs overlays under its state dir, dockerd may leave overlay, shm
and netns mounts under its roots. Nothing may stay mounted after the harness stops, and a temp
dir with live mounts in it cannot be removed.
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

_MNT_DETACH = 2
_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(prefix: Path | str) -> list[str]:
    """Mount points at or below ``prefix`` in this mount namespace, deepest first."""
    root = os.path.realpath(prefix)
    found: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            if len(fields) < 5:
                continue
            point = _unescape(fields[4])
            if point == root or point.startswith(root + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: (p.count("/"), p), reverse=True)


def unmount_all(prefix: Path | str, *, rounds: int = 5) -> list[str]:
    """Lazily unmount everything under ``prefix``; returns what could not be unmounted."""
    libc = ctypes.CDLL(None, use_errno=True)
    remaining = mounts_under(prefix)
    for _ in range(rounds):
        if not remaining:
            break
        for point in remaining:
            libc.umount2(point.encode(), _MNT_DETACH)
        remaining = mounts_under(prefix)
    return remaining
