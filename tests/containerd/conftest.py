"""Fixtures for the containerd client and step tests: the harness daemon, a per-session
namespace, a StepContext factory and a leak check that lists everything carrying our labels."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ContainerdDaemon
from wfe_core.contracts import ProgressEvent, StepContext


@pytest.fixture(scope="session")
def namespace() -> str:
    """A namespace of our own, so tests never see objects of other sessions."""
    return f"wfe-test-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def address(containerd_daemon: ContainerdDaemon) -> str:
    return str(containerd_daemon.address)


class Recorder:
    """Collects what a step streams: log chunks per stream and progress events."""

    def __init__(self) -> None:
        self.logs: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.events: list[ProgressEvent] = []

    def log(self, stream: str, text: str) -> None:
        self.logs[stream].append(text)

    def progress(self, event: ProgressEvent) -> None:
        self.events.append(event)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_ctx(tmp_path: Path, recorder: Recorder) -> Callable[..., StepContext]:
    def make(config: Any, *, step: str = "step", timeout: float | None = None) -> StepContext:
        return StepContext(
            run_id=f"run-{secrets.token_hex(4)}",
            workflow_id="wf",
            step_name=step,
            attempt=1,
            config=config,
            inputs={},
            outputs={},
            workspace=tmp_path,
            base_dir=tmp_path,
            log_sink=recorder.log,
            progress_sink=recorder.progress,
            timeout=timeout,
        )

    return make


async def our_leftovers(
    address: str, namespace: str, pid: int | None = None, *, any_owner: bool = False
) -> list[str]:
    """Every container, task, lease, active snapshot and FIFO dir of this process that exists."""
    from wfe_containerd import labels as owner
    from wfe_containerd._pb.services import (
        containers_pb2,
        leases_pb2,
        snapshots_pb2,
        tasks_pb2,
    )
    from wfe_containerd.connection import Connection
    from wfe_containerd.task_io import DIR_PREFIX, io_dir_prefix

    conn = Connection(address, namespace=namespace)
    found: list[str] = []
    try:
        pid = pid if pid is not None else os.getpid()
        mine = f'labels."{owner.PID}"' if any_owner else f'labels."{owner.PID}"=={pid}'
        containers = await conn.call(
            conn.containers.List, containers_pb2.ListContainersRequest(filters=[mine])
        )
        found += [f"container {c.id}" for c in containers.containers]
        tasks = await conn.call(conn.tasks.List, tasks_pb2.ListTasksRequest())
        found += [f"task {t.id}" for t in tasks.tasks]
        leases = await conn.call(conn.leases.List, leases_pb2.ListRequest())
        found += [f"lease {lease.id}" for lease in leases.leases]
        async for message in conn.stream(
            conn.snapshots.List, snapshots_pb2.ListSnapshotsRequest(snapshotter="overlayfs")
        ):
            found += [
                f"snapshot {i.name}" for i in message.info if i.kind != snapshots_pb2.COMMITTED
            ]
    finally:
        await conn.close()
    prefix = DIR_PREFIX if any_owner else io_dir_prefix(pid)
    found += [f"dir {p}" for p in Path(tempfile.gettempdir()).glob(prefix + "*")]
    return found


@pytest.fixture
def leak_check(address: str, namespace: str) -> Callable[[], Awaitable[None]]:
    """Await it at the end of a test: fails if anything of ours is left in the namespace."""

    async def check() -> None:
        left = await our_leftovers(address, namespace)
        assert not left, f"leftovers: {left}"

    return check
