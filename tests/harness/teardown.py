"""Stopping a harness for good: containers, daemons, strays, mounts, sockets, the directory.

Shared by :meth:`Harness.close <tests.harness.session.Harness.close>` (a session's own harness),
``python -m tests.harness down`` (a harness known only from its state file) and
:func:`sweep_stale` (harnesses of crashed sessions).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import processes
from .mounts import unmount_all
from .paths import DIR_PREFIX, SHIM_SOCKET_DIR, STATE_FILE
from .reclaim import (
    cgroups_of,
    container_cgroups,
    reclaim,
    remove_cgroups,
    remove_empty_dirs,
    runc_state_dirs,
)
from .report import note
from .service import Service

#: Teardown order: Docker before its containerd; the registries last.
STOP_ORDER = ("docker", "docker_containerd", "containerd", "registry", "auth_registry")


def sweep_stale() -> list[Path]:
    """Stop and remove harnesses whose owning test process died without tearing down.

    A SIGKILLed pytest cannot clean up: its daemons die with it (parent-death signal), but
    mounts, cgroups and the directory stay. Harnesses bound to an owner process (``pytest``,
    ``demo``, scripts) whose owner PID is gone are swept; ``up`` harnesses live until ``down``.
    """
    swept: list[Path] = []
    pattern = os.path.join(tempfile.gettempdir(), f"{DIR_PREFIX}*", STATE_FILE)
    for state_file in glob.glob(pattern):
        try:
            data = json.loads(Path(state_file).read_text())
        except (OSError, ValueError):
            continue
        owner = data.get("owner_pid")
        if data.get("mode") == "up" or not owner or processes.pid_alive(int(owner)):
            continue
        base = Path(data["base"])
        if base != Path(state_file).parent:
            continue
        stop_tree(base, data.get("services", {}))
        swept.append(base)
    return swept


def shim_sockets(directory: Path) -> list[Path]:
    """Shim sockets (in /run/containerd/s) of tasks whose bundles live under ``directory``.

    containerd 1.6 places shim sockets outside its state dir; a shim killed during teardown
    would leave its socket behind, so they are collected from the bundles' ``address`` files.
    """
    found: list[Path] = []
    for address_file in directory.glob("**/io.containerd.runtime.v2.task/*/*/address"):
        with contextlib.suppress(OSError):
            address = address_file.read_text().strip()
            if address.startswith("unix://"):
                found.append(Path(address[len("unix://") :]))
    return found


def shim_processes(directory: Path) -> list[Any]:
    """Processes mentioning ``directory`` (daemons, shims) and everything below them."""
    shims = processes.processes_mentioning(str(directory))
    result = list(shims)
    for shim in shims:
        result += processes.descendants(shim.pid)
    return result


def kill_containers(directory: Path) -> None:
    """SIGKILL container processes (children of our shims) before the daemons are stopped.

    A daemon asked to stop with containers still running waits for them (dockerd gives each its
    stop timeout, and ``sleep`` as PID 1 ignores SIGTERM), so teardown kills them outright first.
    """
    doomed = []
    for proc in processes.processes_mentioning(str(directory)):
        try:
            if proc.name().startswith("containerd-shim"):
                doomed += processes.descendants(proc.pid)
        except Exception:
            continue
    cgroups = [cg for proc in doomed for cg in cgroups_of(proc.pid)]
    processes.kill(doomed)
    remove_cgroups(cgroups)


def remove_sockets(sockets: list[Path]) -> None:
    for sock in sockets:
        if sock.parent == SHIM_SOCKET_DIR:
            with contextlib.suppress(OSError):
                sock.unlink()


def stop_tree(
    base: Path, services: dict[str, dict[str, Any]], objects: dict[str, Service] | None = None
) -> list[str]:
    """Stop every daemon of the harness at ``base`` and remove the directory.

    Order (STOP_ORDER): Docker, its containerd, the harness containerd and its shims, then the
    registries; then any process still mentioning ``base``, mounts under it, stray shim sockets
    and finally the directory. PIDs from a state file are only signalled when the process's
    command line still mentions ``base`` (guards against PID reuse). Returns problems found.
    """
    objects = objects or {}
    problems: list[str] = []
    reclaimed = reclaim({n: s.info() for n, s in objects.items()} | services)
    if reclaimed:
        note(f"teardown removed containers that tests left behind: {', '.join(reclaimed)}")
    sockets = shim_sockets(base)
    strays = shim_processes(base)
    cgroups = container_cgroups(base)  # before the daemons' state goes away
    runc_dirs = runc_state_dirs(base)
    kill_containers(base)
    order = {name: i for i, name in enumerate(STOP_ORDER)}
    for name in sorted(set(services) | set(objects), key=lambda n: order.get(n, len(order))):
        service = objects.get(name)
        if service is not None:
            service.stop()
            continue
        pid = services[name].get("pid")
        if pid is not None and _mentions(int(pid), str(base)):
            processes.stop_pid(int(pid))
    processes.kill(p for p in strays if p.is_running())
    processes.terminate(processes.processes_mentioning(str(base)), grace_s=2)
    left = unmount_all(base)
    if left:
        problems.append(f"still mounted: {left}")
    remove_sockets(sockets)
    remove_cgroups(cgroups)
    remove_empty_dirs(runc_dirs)
    shutil.rmtree(base, ignore_errors=True)
    if base.exists():
        problems.append(f"could not remove {base}")
    return problems


def _mentions(pid: int, text: str) -> bool:
    import psutil  # type: ignore[import-untyped]

    try:
        return any(text in part for part in psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
