"""The transport under the client: address resolution, the gRPC channel, metadata, errors.

containerd needs the namespace in the ``containerd-namespace`` metadata of every call (the server
has no default) and, for calls made under a lease, ``containerd-lease``. This module adds both,
raises message limits to containerd's 16 MiB, and turns gRPC errors into
:mod:`wfe_containerd.errors` naming the address, so nothing above it handles grpc directly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import attrs
import grpc
import grpc.aio

from wfe_containerd._pb.services import (
    containers_pb2_grpc,
    content_pb2_grpc,
    diff_pb2_grpc,
    events_pb2_grpc,
    images_pb2_grpc,
    introspection_pb2_grpc,
    leases_pb2_grpc,
    snapshots_pb2_grpc,
    tasks_pb2_grpc,
    version_pb2_grpc,
)
from wfe_containerd.errors import ConnectError, ContainerdError, from_rpc_error

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = "wfe"
ADDRESS_ENV_VARS = ("WFE_CONTAINERD_ADDR", "WFE_CONTAINERD_ADDRESS", "CONTAINERD_ADDRESS")
CALL_TIMEOUT = 300.0
"""Deadline of a unary call unless the caller passes one (``None`` = none, for Tasks.Wait)."""
CLEANUP_TIMEOUT = 30.0
"""Deadline of each cleanup call: a stuck daemon must not hang a cancelled run forever."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""containerd's own client limit; Python's default receive limit (4 MiB) is too small."""


@attrs.frozen
class TLSConfig:
    """TLS files for a ``tcp://`` daemon: ``ca`` verifies it, ``cert``/``key`` for mutual TLS."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None


def resolve_address(address: str | None = None) -> str:
    """The address to use: the argument, else ``$WFE_CONTAINERD_ADDR`` (or its long form
    ``$WFE_CONTAINERD_ADDRESS``, which the test harness exports), else ``$CONTAINERD_ADDRESS``,
    else the system socket."""
    if address:
        return address
    for name in ADDRESS_ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return DEFAULT_ADDRESS


@attrs.frozen
class Target:
    """A parsed address: ``kind`` is ``unix`` or ``tcp``; ``location`` a path or host:port."""

    kind: str
    location: str

    @property
    def grpc_target(self) -> str:
        return f"unix:{self.location}" if self.kind == "unix" else self.location


def parse_address(address: str) -> Target:
    """Accept a socket path, ``unix:///path``, or ``tcp://host:port``; reject anything else."""
    if address.startswith("unix://"):
        path = address[len("unix://") :]
        if not path.startswith("/"):
            raise ConnectError(
                f"bad containerd address {address!r}: a unix address needs an absolute path, "
                "e.g. unix:///run/containerd/containerd.sock"
            )
        return Target("unix", path)
    if address.startswith("tcp://"):
        hostport = address[len("tcp://") :].rstrip("/")
        if not hostport or ":" not in hostport:
            raise ConnectError(f"bad containerd address {address!r}: expected tcp://HOST:PORT")
        return Target("tcp", hostport)
    if address.startswith("/"):
        return Target("unix", address)
    raise ConnectError(
        f"bad containerd address {address!r}: use a socket path, unix:///PATH or tcp://HOST:PORT"
    )


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConnectError(f"cannot read the TLS {what} file {path}: {exc.strerror}") from None


class Connection:
    """One gRPC channel to a containerd daemon, scoped to a namespace.

    Create it inside the event loop that will use it (grpc.aio channels belong to a loop).
    ``call`` and ``stream`` add the metadata and translate errors.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        tls: TLSConfig | None = None,
    ) -> None:
        self.address = resolve_address(address)
        self.namespace = namespace
        self.target = parse_address(self.address)
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if self.target.kind == "tcp" and tls is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls.ca, "CA"),
                private_key=_read(tls.key, "key"),
                certificate_chain=_read(tls.cert, "certificate"),
            )
            self.channel = grpc.aio.secure_channel(self.target.grpc_target, credentials, options)
        else:
            self.channel = grpc.aio.insecure_channel(self.target.grpc_target, options)
        ch = self.channel
        self.version = _stub(version_pb2_grpc, "VersionStub", ch)
        self.introspection = _stub(introspection_pb2_grpc, "IntrospectionStub", ch)
        self.content = _stub(content_pb2_grpc, "ContentStub", ch)
        self.images = _stub(images_pb2_grpc, "ImagesStub", ch)
        self.leases = _stub(leases_pb2_grpc, "LeasesStub", ch)
        self.snapshots = _stub(snapshots_pb2_grpc, "SnapshotsStub", ch)
        self.diff = _stub(diff_pb2_grpc, "DiffStub", ch)
        self.containers = _stub(containers_pb2_grpc, "ContainersStub", ch)
        self.tasks = _stub(tasks_pb2_grpc, "TasksStub", ch)
        self.events = _stub(events_pb2_grpc, "EventsStub", ch)

    def check_socket(self) -> None:
        """Fail early and clearly when a unix socket path does not exist."""
        if self.target.kind == "unix" and not os.path.exists(self.target.location):
            raise ConnectError(
                f"containerd socket {self.target.location} does not exist. Is containerd running? "
                "Set WFE_CONTAINERD_ADDR, CONTAINERD_ADDRESS or the step's containerd_addr to "
                "point at its socket"
            )

    def metadata(self, lease: str | None = None) -> tuple[tuple[str, str], ...]:
        md: tuple[tuple[str, str], ...] = (("containerd-namespace", self.namespace),)
        if lease:
            md += (("containerd-lease", lease),)
        return md

    def error(self, exc: grpc.RpcError, method: Callable[..., Any]) -> ContainerdError:
        return from_rpc_error(exc, address=self.address, method=_method_name(method))

    async def call(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        lease: str | None = None,
        timeout: float | None = CALL_TIMEOUT,
    ) -> Any:
        """A unary call with namespace (and lease) metadata; errors become ours.

        grpc.aio drops a cancellation that races with the call's completion: the response is
        returned as if nothing happened, and the caller would carry on (for instance into an
        endless ``Tasks.Wait``). So a cancellation requested during the call is re-raised here.
        """
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        try:
            response = await method(request, metadata=self.metadata(lease), timeout=timeout)
        except grpc.RpcError as exc:
            raise self.error(exc, method) from None
        raise_if_cancel_lost(task, before)
        return response

    async def stream(
        self, method: Callable[..., Any], request: Any, *, lease: str | None = None
    ) -> AsyncGenerator[Any, None]:
        """A server-streaming call, yielded message by message (lost cancellations re-raised,
        as in :meth:`call`)."""
        call = method(request, metadata=self.metadata(lease))
        task = asyncio.current_task()
        try:
            while True:
                before = task.cancelling() if task is not None else 0
                message = await call.read()
                raise_if_cancel_lost(task, before)
                if message is grpc.aio.EOF:
                    break
                yield message
        except grpc.RpcError as exc:
            raise self.error(exc, method) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self.channel.close()


def raise_if_cancel_lost(task: asyncio.Task[Any] | None, before: int) -> None:
    """Raise CancelledError if ``task`` was asked to cancel since ``before`` was read but no
    CancelledError reached it (see :meth:`Connection.call`)."""
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


def _stub(module: Any, name: str, channel: grpc.aio.Channel) -> Any:
    """A generated stub (the generated modules are untyped, so stubs are ``Any`` here)."""
    return getattr(module, name)(channel)


def _method_name(method: Callable[..., Any]) -> str:
    name = getattr(method, "_method", b"")
    return name.decode() if isinstance(name, bytes) else str(name)
