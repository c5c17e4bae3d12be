"""``wfe gc``: remove what crashed or killed wfe processes left in containerd and in /tmp.

An object is ours when it carries the ``wfe.pid`` label (see :mod:`.labels`), and a leftover when
the process named there is gone from this host. Live runs, other hosts' objects and anything
without our labels (such as image layer snapshots) are never touched. Removal follows the cleanup
order: task, container, snapshot, lease, then FIFO directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from wfe_containerd import labels as owner
from wfe_containerd._pb.services import (
    containers_pb2,
    leases_pb2,
    snapshots_pb2,
    tasks_pb2,
)
from wfe_containerd.connection import DEFAULT_NAMESPACE, Connection
from wfe_containerd.errors import ContainerdError, NotFoundError
from wfe_containerd.pull import DEFAULT_SNAPSHOTTER
from wfe_containerd.task_io import DIR_PREFIX

_FILTER = f'labels."{owner.PID}"'
_DIR = re.compile(rf"^{re.escape(DIR_PREFIX)}(\d+)-")


async def _remove(conn: Connection, method: object, request: object) -> bool:
    """Make a delete call; False when the object was gone already."""
    try:
        await conn.call(method, request)  # type: ignore[arg-type]
    except NotFoundError:
        return False
    return True


async def _collect(conn: Connection) -> list[str]:
    removed: list[str] = []
    snapshotters = await _collect_containers(conn, removed)
    for snapshotter in sorted(snapshotters):
        await _collect_snapshots(conn, snapshotter, removed)
    await _collect_leases(conn, removed)
    return removed


async def _collect_containers(conn: Connection, removed: list[str]) -> set[str]:
    """Dead owners' tasks, containers and rootfs snapshots; returns the snapshotters seen."""
    snapshotters = {DEFAULT_SNAPSHOTTER}
    listed = await conn.call(
        conn.containers.List, containers_pb2.ListContainersRequest(filters=[_FILTER])
    )
    for container in listed.containers:
        if owner.owner_alive(container.labels):
            continue
        cid = container.id
        with contextlib.suppress(NotFoundError):
            await conn.call(
                conn.tasks.Kill,
                tasks_pb2.KillRequest(container_id=cid, signal=int(signal.SIGKILL), all=True),
            )
            with contextlib.suppress(ContainerdError, TimeoutError):
                await conn.call(
                    conn.tasks.Wait, tasks_pb2.WaitRequest(container_id=cid), timeout=10
                )
            await conn.call(conn.tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=cid))
            removed.append(f"task {cid}")
        await _remove(conn, conn.containers.Delete, containers_pb2.DeleteContainerRequest(id=cid))
        removed.append(f"container {cid}")
        if container.snapshot_key:
            snapshotter = container.snapshotter or DEFAULT_SNAPSHOTTER
            snapshotters.add(snapshotter)
            if await _remove_snapshot(conn, snapshotter, container.snapshot_key):
                removed.append(f"snapshot {container.snapshot_key}")
    return snapshotters


async def _collect_snapshots(conn: Connection, snapshotter: str, removed: list[str]) -> None:
    """Dead owners' active snapshots not tied to a container (committed layers stay)."""
    stale: list[str] = []
    with contextlib.suppress(NotFoundError):
        async for message in conn.stream(
            conn.snapshots.List,
            snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter, filters=[_FILTER]),
        ):
            stale += [
                i.name
                for i in message.info
                if not owner.owner_alive(i.labels) and i.kind != snapshots_pb2.COMMITTED
            ]
    for key in stale:
        if await _remove_snapshot(conn, snapshotter, key):
            removed.append(f"snapshot {key}")


async def _remove_snapshot(conn: Connection, snapshotter: str, key: str) -> bool:
    request = snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
    return await _remove(conn, conn.snapshots.Remove, request)


async def _collect_leases(conn: Connection, removed: list[str]) -> None:
    leases = await conn.call(conn.leases.List, leases_pb2.ListRequest(filters=[_FILTER]))
    for lease in leases.leases:
        if owner.owner_alive(lease.labels):
            continue
        if await _remove(conn, conn.leases.Delete, leases_pb2.DeleteRequest(id=lease.id)):
            removed.append(f"lease {lease.id}")


def _pid_alive(pid: int) -> bool:
    """Signal 0 probes without signalling; EPERM means the pid exists (another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect_temp_dirs(base: str | None = None) -> list[str]:
    """Remove FIFO/output directories of processes that no longer exist."""
    removed = []
    root = Path(base or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            match = _DIR.match(entry.name)
            if match and entry.is_dir() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(f"directory {entry}")
    return removed


async def collect_garbage_async(
    address: str | None = None, namespace: str | None = None
) -> list[str]:
    """The async form of :func:`collect_garbage`."""
    conn = Connection(address, namespace=namespace or DEFAULT_NAMESPACE)
    if address is None and conn.target.kind == "unix" and not os.path.exists(conn.target.location):
        # No daemon configured or running here: nothing of ours can be in it.
        await conn.close()
        return collect_temp_dirs()
    try:
        conn.check_socket()
        removed = await _collect(conn)
    finally:
        await conn.close()
    return removed + collect_temp_dirs()


def collect_garbage(address: str | None = None, namespace: str | None = None) -> list[str]:
    """Remove leftovers of wfe runs whose process is gone; returns what was removed.

    ``address`` defaults as everywhere (WFE_CONTAINERD_ADDR, CONTAINERD_ADDRESS, the system
    socket); ``namespace`` defaults to ``wfe``. Must not be called from a running event loop
    (use :func:`collect_garbage_async` there).
    """
    return asyncio.run(collect_garbage_async(address, namespace))
