"""A native asyncio client for containerd, shaped like containerd's Go client.

Typical use (see docs/containerd.md)::

    async with Client("/run/containerd/containerd.sock", namespace="demo") as client:
        image = await client.pull("127.0.0.1:5000/busybox:latest")
        result = await client.run(image, RunOptions(args=["echo", "hello"]),
                                  on_output=lambda stream, text: print(text, end=""))
        print(result.exit_code)

The layers underneath: :mod:`.connection` (channel, metadata, errors), :mod:`.pull` (registry and
unpack), :mod:`.spec` (runtime spec), :mod:`.task_io` (FIFOs). ``new_container`` / ``new_task`` /
``wait`` / ``kill`` / ``delete`` are the low-level steps; :meth:`Client.run` composes them with
live output, a timeout with SIGTERM → grace → SIGKILL, OOM detection and cleanup that always runs
(task, container, snapshot, lease), also when the caller is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import signal as signals
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
from google.protobuf import any_pb2, empty_pb2  # type: ignore[import-untyped]

from wfe_containerd import labels as owner
from wfe_containerd._pb.events import task_pb2 as task_events_pb2
from wfe_containerd._pb.services import (
    containers_pb2,
    events_pb2,
    snapshots_pb2,
    tasks_pb2,
)
from wfe_containerd._pb.types import task_pb2 as task_types_pb2
from wfe_containerd.connection import CLEANUP_TIMEOUT, DEFAULT_NAMESPACE, Connection, TLSConfig
from wfe_containerd.credentials import Credentials
from wfe_containerd.errors import (
    ConnectError,
    ContainerdError,
    NotFoundError,
    RPCError,
    RunError,
)
from wfe_containerd.leases import add_resource, create_lease, delete_lease
from wfe_containerd.oci import Platform
from wfe_containerd.pull import (
    DEFAULT_SNAPSHOTTER,
    Image,
    ProgressCallback,
    ensure_image,
    load_image,
)
from wfe_containerd.shield import SETTLE_TIMEOUT, finish_shielded, settle_then
from wfe_containerd.spec import SPEC_TYPE_URL, BindMount, RunOptions, build_spec
from wfe_containerd.task_io import OutputCallback, TaskIO
from wfe_containerd.userdb import resolve_image_user

RUNTIME = "io.containerd.runc.v2"
DEFAULT_GRACE_PERIOD = 10.0
DRAIN_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 10.0

__all__ = [
    "BindMount",
    "Client",
    "Container",
    "ExitStatus",
    "Image",
    "RunOptions",
    "RunResult",
    "Task",
    "Version",
]


@attrs.frozen
class Version:
    version: str
    revision: str


@attrs.frozen
class ExitStatus:
    code: int


@attrs.frozen
class RunResult:
    """How a container run ended. ``timed_out`` and ``oom_killed`` are our own records, not
    guesses from the exit code (137 can be either)."""

    container_id: str
    exit_code: int
    timed_out: bool = False
    oom_killed: bool = False


def new_container_id(hint: str = "") -> str:
    """A unique id that satisfies containerd's identifier rule (76 chars, [A-Za-z0-9._-])."""
    # ASCII only: str.isalnum() also accepts letters such as "é", which containerd rejects.
    cleaned = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")
    base = f"wfe-{cleaned[:40]}".rstrip("-") if cleaned else "wfe"
    return f"{base}-{secrets.token_hex(6)}"


class Task:
    """A running (or exited) task: the container's init process."""

    def __init__(self, container: Container, pid: int, io: TaskIO | None) -> None:
        self.container = container
        self.pid = pid
        self.io = io

    @property
    def _conn(self) -> Connection:
        return self.container.client.conn

    async def start(self) -> None:
        await self._conn.call(
            self._conn.tasks.Start, tasks_pb2.StartRequest(container_id=self.container.id)
        )

    async def wait(self, timeout: float | None = None) -> ExitStatus:
        response = await self._conn.call(
            self._conn.tasks.Wait,
            tasks_pb2.WaitRequest(container_id=self.container.id),
            timeout=timeout,
        )
        return ExitStatus(int(response.exit_status))

    async def kill(self, signal: int = signals.SIGTERM, *, all_processes: bool = False) -> None:
        """Send a signal; a task that already exited is fine."""
        with contextlib.suppress(NotFoundError):
            await self._conn.call(
                self._conn.tasks.Kill,
                tasks_pb2.KillRequest(
                    container_id=self.container.id, signal=int(signal), all=all_processes
                ),
                timeout=CLEANUP_TIMEOUT,
            )

    async def status(self) -> str:
        response = await self._conn.call(
            self._conn.tasks.Get, tasks_pb2.GetRequest(container_id=self.container.id)
        )
        return str(task_types_pb2.Status.Name(response.process.status))

    async def delete(self) -> int | None:
        """Delete the task (it must have exited); returns its exit status, None if gone."""
        try:
            response = await self._conn.call(
                self._conn.tasks.Delete,
                tasks_pb2.DeleteTaskRequest(container_id=self.container.id),
                timeout=CLEANUP_TIMEOUT,
            )
        except NotFoundError:
            return None
        return int(response.exit_status)


class Container:
    """A container record with its rootfs snapshot, both held by a lease until deleted."""

    def __init__(
        self,
        client: Client,
        container_id: str,
        *,
        snapshotter: str,
        lease: str,
        rootfs: Sequence[Any],
        spec: Mapping[str, Any],
        stop_signal: int,
    ) -> None:
        self.client = client
        self.id = container_id
        self.snapshotter = snapshotter
        self.lease = lease
        self.rootfs = list(rootfs)
        self.spec = spec
        self.stop_signal = stop_signal

    async def new_task(self, io: TaskIO | None = None) -> Task:
        """Create the task (runc create). FIFOs in ``io`` must be open already (TaskIO does)."""
        conn = self.client.conn
        response = await conn.call(
            conn.tasks.Create,
            tasks_pb2.CreateTaskRequest(
                container_id=self.id,
                rootfs=self.rootfs,
                stdout=io.stdout if io else "",
                stderr=io.stderr if io else "",
            ),
        )
        return Task(self, int(response.pid), io)

    async def delete(self) -> None:
        """Remove the container record, then its snapshot, then the lease. Idempotent."""
        conn = self.client.conn
        with contextlib.suppress(NotFoundError):
            await conn.call(
                conn.containers.Delete,
                containers_pb2.DeleteContainerRequest(id=self.id),
                timeout=CLEANUP_TIMEOUT,
            )
        with contextlib.suppress(NotFoundError):
            await conn.call(
                conn.snapshots.Remove,
                snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=self.id),
                timeout=CLEANUP_TIMEOUT,
            )
        await delete_lease(conn, self.lease)


class _OOMWatch:
    """Watches ``/tasks/oom`` events for one container (subscribed before the task starts)."""

    def __init__(self, conn: Connection, container_id: str) -> None:
        self.conn = conn
        self.container_id = container_id
        self.seen = asyncio.Event()
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        ns = self.conn.namespace.replace('"', "")
        request = events_pb2.SubscribeRequest(filters=[f'topic=="/tasks/oom",namespace=="{ns}"'])
        events = self.conn.stream(self.conn.events.Subscribe, request)
        with contextlib.suppress(ContainerdError):
            async with contextlib.aclosing(events):  # ends the subscription when we return
                async for envelope in events:
                    event = task_events_pb2.TaskOOM()
                    with contextlib.suppress(Exception):
                        event.ParseFromString(envelope.event.value)
                    if event.container_id == self.container_id:
                        self.seen.set()
                        return

    async def killed(self, exit_code: int, *, timed_out: bool) -> bool:
        """Whether the OOM killer ended the task: the event, else for a SIGKILL exit (137) that
        was not our timeout's, the cgroup's counter or an event arriving up to 0.5 s late."""
        if self.seen.is_set():
            return True
        if exit_code != 137 or timed_out:
            return False
        if _cgroup_oom_kills(self.conn.namespace, self.container_id) > 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.seen.wait(), 0.5)
        return self.seen.is_set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


def _cgroup_oom_kills(namespace: str, container_id: str) -> int:
    """OOM kills recorded in the container's cgroup (v1 memory.oom_control or v2 memory.events)."""
    candidates = [
        (Path(f"/sys/fs/cgroup/memory/{namespace}/{container_id}/memory.oom_control"), "oom_kill"),
        (Path(f"/sys/fs/cgroup/{namespace}/{container_id}/memory.events"), "oom_kill"),
    ]
    for path, key in candidates:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key and value.strip().isdigit():
                    return int(value)
    return 0


def _with_owner(labels: Mapping[str, str] | None) -> dict[str, str]:
    """This process's owner labels (what ``wfe gc`` goes by), then the caller's on top."""
    return {**owner.owner_labels(), **(labels or {})}


def _signal_number(name: str) -> int:
    """The image's StopSignal (``SIGINT``, ``INT``, ``2``) as a number. An unknown name falls back
    to SIGTERM: failing at stop time, with a timeout already in progress, would help no one."""
    if not name:
        return int(signals.SIGTERM)
    if name.isdigit():
        return int(name)
    key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    try:
        return int(signals.Signals[key])
    except KeyError:
        return int(signals.SIGTERM)


class Client:
    """A containerd client bound to one address and namespace. Use as an async context manager
    (or call :meth:`connect` and :meth:`close`); create it in the loop that uses it."""

    def __init__(
        self,
        address: str | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        tls: TLSConfig | None = None,
    ) -> None:
        self.conn = Connection(address, namespace=namespace, tls=tls)
        self.server_version: Version | None = None

    @property
    def address(self) -> str:
        return self.conn.address

    @property
    def namespace(self) -> str:
        return self.conn.namespace

    async def __aenter__(self) -> Client:
        # __aexit__ does not run when __aenter__ fails: close the channel here, or it leaks.
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> Version:
        """Check the socket and do the version handshake; errors name the address."""
        self.conn.check_socket()
        try:
            self.server_version = await self.version(timeout=HANDSHAKE_TIMEOUT)
        except RPCError as exc:
            raise ConnectError(
                f"containerd at {self.address} did not answer the version handshake: {exc}"
            ) from None
        return self.server_version

    async def close(self) -> None:
        await self.conn.close()

    async def version(self, timeout: float | None = None) -> Version:
        response = await self.conn.call(
            self.conn.version.Version, empty_pb2.Empty(), timeout=timeout
        )
        return Version(response.version, response.revision)

    # -- images ------------------------------------------------------------------------------

    async def pull(
        self,
        ref: str,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        platform: Platform | None = None,
        credentials: Mapping[str, Credentials] | None = None,
        insecure_registries: Sequence[str] = (),
        progress: ProgressCallback | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Image:
        """Pull and unpack ``ref`` (always contacts the registry)."""
        return await self.ensure_image(
            ref,
            policy="always",
            snapshotter=snapshotter,
            platform=platform,
            credentials=credentials,
            insecure_registries=insecure_registries,
            progress=progress,
            labels=labels,
        )

    async def get_image(
        self, ref: str, *, snapshotter: str = DEFAULT_SNAPSHOTTER, platform: Platform | None = None
    ) -> Image | None:
        """The image if it is fully present (content and unpacked layers), else None."""
        return await load_image(self.conn, ref, snapshotter=snapshotter, platform=platform)

    async def ensure_image(
        self,
        ref: str,
        *,
        policy: str = "if-not-present",
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        platform: Platform | None = None,
        credentials: Mapping[str, Credentials] | None = None,
        insecure_registries: Sequence[str] = (),
        progress: ProgressCallback | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Image:
        """Apply a pull policy (``always``, ``if-not-present``, ``never``)."""
        return await ensure_image(
            self.conn,
            ref,
            policy=policy,
            snapshotter=snapshotter,
            platform=platform,
            credentials=credentials,
            insecure_registries=insecure_registries,
            progress=progress,
            lease_labels=_with_owner(labels),
        )

    # -- containers --------------------------------------------------------------------------

    async def new_container(
        self,
        container_id: str,
        image: Image,
        options: RunOptions,
        *,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        labels: Mapping[str, str] | None = None,
    ) -> Container:
        """Prepare the rootfs snapshot and create the container record, under a lease."""
        conn = self.conn
        all_labels = _with_owner(labels)
        user = await resolve_image_user(conn, image.layers, options.user or image.config.user)
        try:
            spec = build_spec(
                namespace=self.namespace,
                container_id=container_id,
                image=image.config,
                options=options,
                user=user,
            )
        except ValueError as exc:
            raise RunError(f"{image.name}: {exc}") from None
        lease = f"wfe-run-{container_id}"
        container = Container(
            self,
            container_id,
            snapshotter=snapshotter,
            lease=lease,
            rootfs=[],
            spec=spec,
            stop_signal=_signal_number(image.config.stop_signal),
        )
        # The records are created in a task of their own: if we are cancelled meanwhile, the
        # in-flight calls still land before the cleanup runs, so nothing appears after it.
        work = asyncio.ensure_future(self._create_records(container, image, all_labels))
        try:
            await asyncio.shield(work)
        except BaseException:
            await finish_shielded(settle_then(work, container.delete()))
            raise
        return container

    async def _create_records(
        self, container: Container, image: Image, labels: Mapping[str, str]
    ) -> None:
        conn = self.conn
        await create_lease(
            conn, "", expire_seconds=24 * 3600, labels=labels, lease_id=container.lease
        )
        if image.chain_id:
            await add_resource(
                conn, container.lease, f"snapshots/{container.snapshotter}", image.chain_id
            )
        prepared = await conn.call(
            conn.snapshots.Prepare,
            snapshots_pb2.PrepareSnapshotRequest(
                snapshotter=container.snapshotter,
                key=container.id,
                parent=image.chain_id,
                labels=labels,
            ),
            lease=container.lease,
        )
        container.rootfs = list(prepared.mounts)
        record = containers_pb2.Container(
            id=container.id,
            image=image.name,
            labels={
                **labels,
                "io.containerd.image.config.stop-signal": image.config.stop_signal or "SIGTERM",
            },
            runtime=containers_pb2.Container.Runtime(name=RUNTIME),
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(container.spec).encode()),
            snapshotter=container.snapshotter,
            snapshot_key=container.id,
        )
        await conn.call(
            conn.containers.Create,
            containers_pb2.CreateContainerRequest(container=record),
            lease=container.lease,
        )

    async def run(
        self,
        image: Image,
        options: RunOptions,
        *,
        container_id: str | None = None,
        on_output: OutputCallback | None = None,
        timeout: float | None = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
        labels: Mapping[str, str] | None = None,
        output_file_target: str | None = None,
        on_output_file: Callable[[Path], None] | None = None,
    ) -> RunResult:
        """Run ``image`` to completion with live output; always cleans up.

        On ``timeout`` (seconds) or cancellation the task gets its stop signal (SIGTERM unless the
        image says otherwise), then SIGKILL after ``grace_period``. With ``output_file_target``
        an empty host file is bind-mounted there, and ``on_output_file`` gets its host path after
        the task has exited and before it is removed.
        """
        cid = container_id or new_container_id()
        io = TaskIO(cid)
        try:
            if output_file_target:
                options = attrs.evolve(
                    options,
                    mounts=[*options.mounts, BindMount(str(io.output_file), output_file_target)],
                )
            container = await self.new_container(
                cid, image, options, snapshotter=snapshotter, labels=labels
            )
        except BaseException:
            io.close()
            raise
        return await self._run_container(
            container, io, on_output or (lambda s, t: None), timeout, grace_period, on_output_file
        )

    async def _run_container(
        self,
        container: Container,
        io: TaskIO,
        on_output: OutputCallback,
        timeout: float | None,
        grace_period: float,
        on_output_file: Callable[[Path], None] | None,
    ) -> RunResult:
        task: Task | None = None
        pump: asyncio.Future[None] | None = None
        oom = _OOMWatch(self.conn, container.id)
        waiter: asyncio.Future[ExitStatus] | None = None
        timed_out = False
        exit_code: int | None = None
        oom_killed = False
        creating = asyncio.ensure_future(container.new_task(io))
        try:
            try:
                task = await asyncio.shield(creating)
            except BaseException:
                # Let an in-flight Tasks.Create land, so the cleanup below can delete it.
                await finish_shielded(asyncio.wait({creating}, timeout=SETTLE_TIMEOUT))
                raise
            pump = io.start(on_output)
            await task.start()
            waiter = asyncio.ensure_future(task.wait())
            try:
                status = await asyncio.wait_for(asyncio.shield(waiter), timeout)
                exit_code = status.code
            except TimeoutError:
                timed_out = True
                exit_code = await finish_shielded(self._stop(task, waiter, grace_period))
            except asyncio.CancelledError:
                await finish_shielded(self._stop(task, waiter, grace_period))
                raise
            oom_killed = await oom.killed(exit_code, timed_out=timed_out)
            if pump is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(pump), DRAIN_TIMEOUT)
            if on_output_file is not None:
                on_output_file(io.output_file)
        finally:
            await finish_shielded(
                self._cleanup(container, task or Task(container, 0, io), io, waiter, oom)
            )
        assert exit_code is not None
        return RunResult(container.id, exit_code, timed_out, oom_killed)

    async def _stop(
        self, task: Task, waiter: asyncio.Future[ExitStatus], grace_period: float
    ) -> int:
        """Stop signal, grace period, SIGKILL to every process; returns the exit status."""
        await task.kill(task.container.stop_signal)
        done, _ = await asyncio.wait({waiter}, timeout=grace_period)
        if not done:
            await task.kill(signals.SIGKILL, all_processes=True)
            await asyncio.wait({waiter}, timeout=30)
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            return waiter.result().code
        return 137

    async def _cleanup(
        self,
        container: Container,
        task: Task,
        io: TaskIO,
        waiter: asyncio.Future[ExitStatus] | None,
        oom: _OOMWatch,
    ) -> None:
        """Task, container, snapshot, lease; FIFOs and temp dir. Every step tolerates 'gone'."""
        try:
            if waiter is None or not waiter.done():
                await task.kill(signals.SIGKILL, all_processes=True)
                with contextlib.suppress(ContainerdError, TimeoutError):
                    await asyncio.wait_for(task.wait(), 30)
            try:
                await task.delete()
            except ContainerdError:
                await task.kill(signals.SIGKILL, all_processes=True)
                await asyncio.sleep(0.2)
                await task.delete()
        finally:
            if waiter is not None and not waiter.done():
                waiter.cancel()
            io.close()
            await oom.close()
            await container.delete()
