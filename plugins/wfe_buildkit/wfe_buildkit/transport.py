"""Addresses, gRPC channels and the HTTP-upgrade relay for Docker Engine.

Supported addresses:

* ``unix:///path/buildkitd.sock`` (the default is ``unix:///run/buildkit/buildkitd.sock``, and the
  ``BUILDKIT_HOST`` environment variable overrides it);
* ``tcp://host:port``, plain or with TLS (CA, client certificate and key, server name);
* ``docker://`` (the engine at ``DOCKER_HOST`` or ``/var/run/docker.sock``) and
  ``docker+unix:///path/docker.sock`` for Docker Engine's embedded BuildKit.

grpcio cannot adopt an already-upgraded socket, so for Docker the client listens on a private
unix socket (in a 0700 temp dir) and, for each connection grpcio opens there, performs
``POST /grpc`` with ``Upgrade: h2c`` on the engine socket and splices the two byte streams.
Upgrade failures are remembered, so errors can show the engine's own message instead of
grpcio's bare "Socket closed".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading

import grpc

from wfe_buildkit.address import (
    DEFAULT_ADDRESS,
    Address,
    TLSConfig,
    default_address,
    parse_address,
)
from wfe_buildkit.engine import DockerEngine, EngineHTTPError
from wfe_buildkit.errors import DaemonConnectionError, InvalidRequest

MAX_MESSAGE = 16 * 1024 * 1024
SPLICE_CHUNK = 256 * 1024

#: Private directories (relay and session sockets) currently alive in this process; tests use
#: it to prove that nothing is left behind after a build, a failure or a cancellation.
LIVE_DIRECTORIES: set[str] = set()

CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.enable_http_proxy", 0),
    ("grpc.keepalive_time_ms", 600_000),
]


async def _splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(SPLICE_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def splice_both(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Copy bytes both ways until both directions ended; close both streams."""
    try:
        await asyncio.gather(_splice(a[0], b[1]), _splice(b[0], a[1]))
    finally:
        for writer in (a[1], b[1]):
            writer.close()
        for writer in (a[1], b[1]):
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class ThreadedSplice:
    """Copies bytes between two connected sockets in two threads with ``os.splice``.

    Used for the session pipe, where every gRPC message of a context upload crosses the relay:
    kernel-side splicing through a pipe, with the GIL released, costs far less per message than
    an asyncio read/write round on the event loop that also serves the session.
    """

    def __init__(self, a: socket.socket, b: socket.socket, pending: bytes = b"") -> None:
        self.sockets = (a, b)
        a.setblocking(True)
        b.setblocking(True)
        if pending:
            b.sendall(pending)
        self.threads = [
            threading.Thread(target=self._pump, args=(a, b), daemon=True, name="wfe-bk-splice"),
            threading.Thread(target=self._pump, args=(b, a), daemon=True, name="wfe-bk-splice"),
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        read_end, write_end = os.pipe()
        try:
            while True:
                moved = os.splice(src.fileno(), write_end, SPLICE_CHUNK)
                if moved == 0:
                    break
                while moved:
                    moved -= os.splice(read_end, dst.fileno(), moved)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            os.close(read_end)
            os.close(write_end)

    async def close(self) -> None:
        """Shut both sockets down, wait for the threads, close the sockets."""
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            await asyncio.to_thread(thread.join, 5)
        for sock in self.sockets:
            sock.close()


class UpgradeRelay:
    """A private unix socket whose connections become ``POST /grpc`` upgrades on the engine."""

    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine
        self.directory = tempfile.mkdtemp(prefix="wfe-bk-")
        os.chmod(self.directory, 0o700)
        LIVE_DIRECTORIES.add(self.directory)
        self.path = os.path.join(self.directory, "grpc.sock")
        self.last_error: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._handle, path=self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                upstream = await self.engine.upgrade("/grpc")
            except (EngineHTTPError, DaemonConnectionError) as exc:
                self.last_error = str(exc)
                writer.close()
                return
            await splice_both((reader, writer), upstream)
        except asyncio.CancelledError:
            writer.close()  # relay shutting down; the connection ends with it
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        shutil.rmtree(self.directory, ignore_errors=True)
        LIVE_DIRECTORIES.discard(self.directory)


def tcp_target(address: Address) -> str:
    """gRPC's ``host:port`` for a ``tcp://`` address, with an IPv6 literal in brackets again
    (``urlsplit`` drops them: ``tcp://[::1]:1234`` has the hostname ``::1``)."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


class Transport:
    """Owns the gRPC channel to one daemon (and the Docker relay when needed)."""

    def __init__(self, address: Address, tls: TLSConfig | None = None) -> None:
        self.address = address
        self.tls = tls
        self.engine: DockerEngine | None = None
        self.relay: UpgradeRelay | None = None
        self._channel: grpc.aio.Channel | None = None
        self._lock: asyncio.Lock | None = None
        #: Attach sessions with ``Control.Session`` even on Docker Engine (which also serves it
        #: over /grpc); by default Docker sessions use the ``POST /session`` upgrade like buildx.
        self.session_over_control = False
        if address.kind == "docker":
            self.engine = DockerEngine(address.path, address.raw)
        if tls is not None and address.kind != "tcp":
            raise InvalidRequest(f"TLS settings apply to tcp:// addresses only, not {address}")

    async def channel(self) -> grpc.aio.Channel:
        """The channel, created on first use (after any fork, as grpcio requires)."""
        if self._channel is not None:
            return self._channel
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # concurrent first uses share one channel and one relay
            if self._channel is None:
                await self._open()
            assert self._channel is not None
            return self._channel

    async def _open(self) -> None:
        address = self.address
        if address.kind == "docker":
            assert self.engine is not None
            await self.engine.ping()
            relay = UpgradeRelay(self.engine)
            try:
                await relay.start()
            except BaseException:  # e.g. the connect timeout: a retry makes a new relay
                await relay.close()
                raise
            self.relay = relay
            target = f"unix:{relay.path}"
            self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        elif address.kind == "unix":
            if not os.path.exists(address.path):
                raise DaemonConnectionError(
                    address.raw,
                    f"no socket at {address.path}",
                    "is buildkitd running? set BUILDKIT_HOST or buildkit_addr to its address",
                )
            self._channel = grpc.aio.insecure_channel(
                f"unix:{address.path}", options=CHANNEL_OPTIONS
            )
        else:
            target = tcp_target(address)
            if self.tls is not None:
                from wfe_buildkit.tls_config import channel_credentials, channel_options, load_tls

                material = load_tls(self.tls)  # checked: missing files, key/cert mismatch...
                options = [*CHANNEL_OPTIONS, *channel_options(material)]
                self._channel = grpc.aio.secure_channel(
                    target, channel_credentials(material), options=options
                )
            else:
                self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)

    def describe_failure(self, error: grpc.aio.AioRpcError) -> DaemonConnectionError:
        """Turn a transport-level RPC error into an error naming the address and a hint."""
        address = self.address
        if self.relay is not None and self.relay.last_error:
            return DaemonConnectionError(
                address.raw,
                f"Docker Engine refused the BuildKit upgrade: {self.relay.last_error}",
                "the engine needs BuildKit support (Docker 18.09+, API /grpc)",
            )
        details = error.details() or error.code().name
        if address.kind == "tcp" and error.code() == grpc.StatusCode.UNAVAILABLE:
            from wfe_buildkit.tls_config import explain_tls_failure

            return explain_tls_failure(address.raw, self.tls, details)
        if address.kind == "tcp":
            hint = "check host, port, firewall and TLS settings (ca, cert, key, server name)"
        elif address.kind == "unix":
            hint = "is buildkitd running and is the socket readable by this user?"
        else:
            hint = "is dockerd running with BuildKit available?"
        return DaemonConnectionError(address.raw, details, hint)

    async def close(self) -> None:
        """Close the channel, then the relay (also when closing the channel fails)."""
        channel, self._channel = self._channel, None
        relay, self.relay = self.relay, None
        try:
            if channel is not None:
                await channel.close(None)
        finally:
            if relay is not None:
                await relay.close()


__all__ = [
    "DEFAULT_ADDRESS",
    "Address",
    "TLSConfig",
    "Transport",
    "UpgradeRelay",
    "default_address",
    "parse_address",
    "splice_both",
]
