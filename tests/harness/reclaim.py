"""Removing what tests left running, through the daemons, before the daemons are stopped.

Deleting tasks and containers through containerd and Docker lets runc remove their cgroups and
rootfs mounts and lets the shims exit cleanly, which a plain SIGKILL of the processes does not.
Whatever this misses is killed afterwards (see :mod:`tests.harness.session`); the cgroups of
processes killed that way are removed by :func:`remove_cgroups`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from .http_probe import unix_get, unix_request

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _ctr(address: str, *args: str, timeout: float = 10) -> str:
    result = subprocess.run(
        ["ctr", "--address", address, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result.stdout if result.returncode == 0 else ""


def containerd_leftovers(address: str) -> list[str]:
    """Kill and delete every task and container in every namespace; returns ``ns/id`` of each."""
    if not os.path.exists(address):
        return []
    removed: list[str] = []
    namespaces: list[str] = []
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        namespaces = _ctr(address, "namespaces", "ls", "-q").split()
        for ns in namespaces:
            for task in _ctr(address, "-n", ns, "tasks", "ls", "-q").split():
                _ctr(address, "-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", task)
                _ctr(address, "-n", ns, "tasks", "delete", "-f", task)
            for container in _ctr(address, "-n", ns, "containers", "ls", "-q").split():
                _ctr(address, "-n", ns, "containers", "rm", container)
                removed.append(f"{ns}/{container}")
    # runc removes a container's cgroup but not the per-namespace parent (/<namespace>).
    for ns in namespaces:
        if ns not in _SHARED_PARENTS:
            for parent in _CGROUP_ROOT.glob(f"*/{ns}"):
                with contextlib.suppress(OSError):
                    parent.rmdir()
    return removed


def docker_leftovers(socket: str) -> list[str]:
    """Force-remove every container of the harness Docker Engine; returns their names."""
    if not os.path.exists(socket):
        return []
    removed: list[str] = []
    with contextlib.suppress(OSError, ValueError):
        status, body = unix_get(socket, "/containers/json?all=1")
        if status != 200:
            return []
        for container in json.loads(body):
            unix_request(socket, "DELETE", f"/containers/{container['Id']}?force=1&v=1")
            names = container.get("Names") or [container["Id"][:12]]
            removed.append(str(names[0]).lstrip("/"))
    return removed


def reclaim(services: dict[str, dict[str, Any]]) -> list[str]:
    """Remove leftover containers of the harness daemons; returns what was removed.

    A non-empty result means some test did not clean up after itself; the harness reports it.
    """
    removed: list[str] = []
    if "docker" in services:
        removed += [f"docker: {n}" for n in docker_leftovers(services["docker"]["socket"])]
    if "containerd" in services:
        address = services["containerd"]["address"]
        removed += [f"containerd: {n}" for n in containerd_leftovers(address)]
    return removed


def cgroups_of(pid: int) -> list[Path]:
    """The cgroup v1/v2 directories ``pid`` lives in (to remove after it is killed)."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if path in ("", "/"):
                continue
            if controllers == "":
                found.append(_CGROUP_ROOT / path.lstrip("/"))
                continue
            for controller in controllers.split(","):
                name = controller.removeprefix("name=")
                found.append(_CGROUP_ROOT / name / path.lstrip("/"))
    return found


#: Parent cgroups shared with daemons outside the harness; never removed.
_SHARED_PARENTS = frozenset({"docker", "buildkit", "system.slice", "user.slice"})


_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def container_cgroups(base: Path) -> list[Path]:
    """Cgroups runc made for the containers of the harness at ``base``, found by container id.

    A container whose shim died with its daemon has no process left for :func:`cgroups_of` to
    ask, but runc named its cgroup after the container: dockerd's are ``/docker/<id>``,
    containerd's ``/<namespace>/<id>`` (in every v1 controller, or once in the v2 hierarchy).
    """
    names: set[str] = set()
    for task in base.glob("*/state/io.containerd.runtime.v2.task/*/*"):
        names.add(f"{task.parent.name}/{task.name}")
        if _CONTAINER_ID.fullmatch(task.name):
            names.add(f"docker/{task.name}")
    for container in base.glob("*/data/containers/*"):
        if _CONTAINER_ID.fullmatch(container.name):
            names.add(f"docker/{container.name}")
    hierarchies = [_CGROUP_ROOT]
    with contextlib.suppress(OSError):
        hierarchies += [c for c in _CGROUP_ROOT.iterdir() if c.is_dir()]
    return [h / name for h in hierarchies for name in sorted(names) if (h / name).is_dir()]


#: Where runc keeps container state when the runtime options set no ``Root`` (containerd 1.6).
RUNC_STATE_ROOT = Path("/run/containerd/runc")


def runc_state_dirs(base: Path) -> list[Path]:
    """runc's per-namespace state directories for the namespaces the harness at ``base`` ran
    tasks in: containerd 1.6 puts them under /run/containerd/runc whatever its own state dir."""
    namespaces = {task.name for task in base.glob("*/state/io.containerd.runtime.v2.task/*")}
    return [RUNC_STATE_ROOT / ns for ns in sorted(namespaces)]


def remove_empty_dirs(paths: list[Path]) -> None:
    """rmdir each path that is empty now (runc recreates a namespace's dir when it needs it)."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.rmdir()


def remove_cgroups(paths: list[Path], *, wait: float = 5.0) -> None:
    """rmdir the given cgroups, deepest first, and their parents once empty.

    A cgroup can only go once its last process has fully exited; right after a SIGKILL the
    kernel may still be tearing the process down and rmdir says EBUSY, so that is retried for
    up to ``wait`` seconds. A containerd namespace's parent cgroup (``/<namespace>``) is removed
    when nothing else is in it; shared parents such as ``/docker`` stay.
    """
    deadline = time.monotonic() + wait
    for path in sorted(set(paths), key=lambda p: len(p.parts), reverse=True):
        _rmdir_when_empty(path, deadline)
        parent = path.parent
        if parent.name not in _SHARED_PARENTS and parent.parent.parent == _CGROUP_ROOT:
            with contextlib.suppress(OSError):
                parent.rmdir()


def _rmdir_when_empty(path: Path, deadline: float) -> None:
    while True:
        try:
            path.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return
        time.sleep(0.05)
