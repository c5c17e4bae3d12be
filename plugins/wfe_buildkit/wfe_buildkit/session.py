"""The client-side session: a private gRPC server that the daemon calls back during a build.

BuildKit asks the client for the build context (FileSync), hands exports back (FileSend), asks
for registry credentials (Auth), secrets and SSH agent access, and health-checks the session every
second (Docker 20.10 kills the session on the first failed check). The server is a
``grpc.aio.server`` on a unix socket in a private 0700 directory, one per build because handler
calls carry no session id. The daemon reaches it as an HTTP/2 *client* over a byte pipe:

* standalone buildkitd: the pipe is the ``Control.Session`` bidi stream, pumped into a plain
  connection to our socket;
* Docker Engine: ``POST /session`` upgrades a connection to the engine, spliced to our socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets as pysecrets
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote_plus

import attrs
import grpc
from grpc_health.v1 import health, health_pb2_grpc

from wfe_buildkit._pb import (
    auth_pb2,
    auth_pb2_grpc,
    control_pb2,
    fsutil_pb2,
    secrets_pb2,
    secrets_pb2_grpc,
)
from wfe_buildkit.engine import DockerEngine, EngineHTTPError
from wfe_buildkit.errors import SessionError
from wfe_buildkit.filesync import TransferStats, receive_file, receive_tree, send_tree
from wfe_buildkit.fstree import WalkFilter
from wfe_buildkit.registry_auth import canonical_host
from wfe_buildkit.ssh_forward import SSHServicer, add_ssh_servicer
from wfe_buildkit.transport import LIVE_DIRECTORIES, ThreadedSplice

PUMP_CHUNK = 64 * 1024
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


@attrs.frozen
class RegistryCredentials:
    """Username and password (or identity token with an empty username) for one registry."""

    username: str
    password: str = attrs.field(repr=False)


class SessionService(Protocol):
    """An extra service on the session server (e.g. a richer Auth, Secrets or SSH servicer).

    ``methods`` are the full gRPC method names to advertise; ``register`` adds the servicer to
    the server. A service advertising ``/moby.filesync.v1.Auth/...`` replaces the built-in one.
    """

    methods: Sequence[str]

    def register(self, server: grpc.aio.Server) -> None: ...


@attrs.frozen
class OutputTarget:
    """Where one exporter's client-side output goes: a directory (``local``) or a file."""

    path: Path
    is_directory: bool


def _metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata() or ():
        text = value.decode() if isinstance(value, bytes) else str(value)
        out.setdefault(key.lower(), []).append(text)
    for key in list(out):
        if key.endswith("-encoded") and out[key][:1] == ["1"]:
            base = key[: -len("-encoded")]
            out[base] = [unquote_plus(v) for v in out.get(base, [])]
    return out


class _AuthService(auth_pb2_grpc.AuthServicer):
    """Answers ``Credentials`` from a host -> credentials mapping (``Client.build``'s
    ``registry_auth``); hosts match as :func:`~wfe_buildkit.registry_auth.canonical_host`
    reduces them, so ``docker.io``, ``https://index.docker.io/v1/`` and the
    ``registry-1.docker.io`` the daemon asks about are one registry."""

    def __init__(self, credentials: Mapping[str, RegistryCredentials]) -> None:
        self.credentials = credentials_by_registry(credentials)

    async def Credentials(
        self, request: Any, context: Any
    ) -> auth_pb2.CredentialsResponse:
        found = self.credentials.get(canonical_host(request.Host))
        if found is None:
            return auth_pb2.CredentialsResponse()
        return auth_pb2.CredentialsResponse(Username=found.username, Secret=found.password)


def credentials_by_registry(
    credentials: Mapping[str, RegistryCredentials],
) -> dict[str, RegistryCredentials]:
    """``credentials`` keyed by :func:`~wfe_buildkit.registry_auth.canonical_host`."""
    return {canonical_host(host): found for host, found in credentials.items()}


class _SecretsService(secrets_pb2_grpc.SecretsServicer):
    def __init__(self, sources: Mapping[str, Path | bytes]) -> None:
        self.sources = dict(sources)

    async def GetSecret(
        self, request: Any, context: Any
    ) -> secrets_pb2.GetSecretResponse:
        source = self.sources.get(request.ID)
        if source is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"secret {request.ID} not found")
        if isinstance(source, bytes):
            return secrets_pb2.GetSecretResponse(data=source)
        try:
            data = await asyncio.to_thread(Path(str(source)).read_bytes)
        except OSError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"secret {request.ID} not readable")
        return secrets_pb2.GetSecretResponse(data=data)


class SessionServer:
    """The per-build session server. Use as ``async with SessionServer(...) as server``."""

    def __init__(
        self,
        *,
        local_dirs: Mapping[str, Path] | None = None,
        outputs: Sequence[OutputTarget | None] = (),
        credentials: Mapping[str, RegistryCredentials] | None = None,
        secrets: Mapping[str, Path | bytes] | None = None,
        ssh_agents: Mapping[str, str] | None = None,
        shared_key: str = "",
        services: Sequence[SessionService] = (),
    ) -> None:
        self.session_id = "wfe-" + uuid.uuid4().hex
        self.shared_key = shared_key
        self.local_dirs = dict(local_dirs or {})
        self.outputs = list(outputs)
        self.credentials = dict(credentials or {})
        self.secrets = dict(secrets or {})
        self.ssh_agents = dict(ssh_agents or {})
        self.services = list(services)
        self.stats = TransferStats()
        self.errors: list[str] = []
        self.directory = ""
        self.socket_path = ""
        self._server: grpc.aio.Server | None = None
        self._attach_task: asyncio.Task[None] | None = None
        self._call: Any = None
        self._splice: ThreadedSplice | None = None

    @property
    def methods(self) -> list[str]:
        """The gRPC methods advertised to the daemon (it checks FileSync/FileSend)."""
        methods = ["/grpc.health.v1.Health/Check"]
        if self.local_dirs:
            methods += [
                "/moby.filesync.v1.FileSync/DiffCopy",
                "/moby.filesync.v1.FileSync/TarStream",
            ]
        if any(self.outputs):
            methods.append("/moby.filesync.v1.FileSend/DiffCopy")
        if not self._custom_auth:
            methods += [
                "/moby.filesync.v1.Auth/Credentials",
                "/moby.filesync.v1.Auth/FetchToken",
                "/moby.filesync.v1.Auth/GetTokenAuthority",
                "/moby.filesync.v1.Auth/VerifyTokenAuthority",
            ]
        if self.secrets:
            methods.append("/moby.buildkit.secrets.v1.Secrets/GetSecret")
        if self.ssh_agents:
            methods += [
                "/moby.sshforward.v1.SSH/CheckAgent",
                "/moby.sshforward.v1.SSH/ForwardAgent",
            ]
        for service in self.services:
            methods += [m for m in service.methods if m not in methods]
        return methods

    @property
    def _custom_auth(self) -> bool:
        return any(
            m.startswith("/moby.filesync.v1.Auth/") for s in self.services for m in s.methods
        )

    async def __aenter__(self) -> SessionServer:
        try:
            await self.start()
        except BaseException:
            await self.close()  # ``__aexit__`` does not run when ``__aenter__`` fails
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="wfe-bks-")
        os.chmod(self.directory, 0o700)
        LIVE_DIRECTORIES.add(self.directory)
        self.socket_path = os.path.join(self.directory, "s.sock")
        server = grpc.aio.server(options=SERVER_OPTIONS)
        self._server = server  # set first, so that close() stops it if the setup below fails
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        if not self._custom_auth:
            auth_pb2_grpc.add_AuthServicer_to_server(  # type: ignore[no-untyped-call]
                _AuthService(self.credentials), server
            )
        for service in self.services:
            service.register(server)
        if self.secrets:
            secrets_pb2_grpc.add_SecretsServicer_to_server(  # type: ignore[no-untyped-call]
                _SecretsService(self.secrets), server
            )
        if self.ssh_agents:
            # the same read-only agent proxy the step uses (ssh_forward.SSHServicer): a build
            # may list keys and sign, never add, remove or lock keys in the forwarded agent
            agents = {ident: Path(path) for ident, path in self.ssh_agents.items()}
            add_ssh_servicer(server, SSHServicer(agents))
        file_sync = grpc.method_handlers_generic_handler(
            "moby.filesync.v1.FileSync",
            {
                "DiffCopy": grpc.stream_stream_rpc_method_handler(
                    self._file_sync,
                    request_deserializer=fsutil_pb2.Packet.FromString,
                    response_serializer=fsutil_pb2.Packet.SerializeToString,
                )
            },
        )
        file_send = grpc.method_handlers_generic_handler(
            "moby.filesync.v1.FileSend",
            {"DiffCopy": grpc.stream_stream_rpc_method_handler(self._file_send)},
        )
        server.add_generic_rpc_handlers((file_sync, file_send))
        server.add_insecure_port(f"unix:{self.socket_path}")
        await server.start()

    async def _file_sync(self, _requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        md = _metadata(context)
        name = (md.get("dir-name") or [""])[0]
        root = self.local_dirs.get(name)
        if root is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no access allowed to dir {name!r}")
            return
        flt = WalkFilter(
            include_patterns=md.get("include-patterns", []),
            exclude_patterns=md.get("exclude-patterns", []),
            follow_paths=md.get("followpaths", []),
        )
        try:
            await send_tree(context, root, flt, self.stats)
        except Exception as exc:
            self.errors.append(f"uploading {name} ({root}): {exc}")
            raise

    async def _file_send(self, _requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        md = _metadata(context)
        index = int((md.get("buildkit-attachable-exporter-id") or ["0"])[0] or 0)
        target = self.outputs[index] if 0 <= index < len(self.outputs) else None
        if target is None:
            target = next((t for t in self.outputs if t is not None), None)
        if target is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no export destination")
            return
        try:
            if target.is_directory:
                await receive_tree(context, target.path, self.stats)
            else:
                await receive_file(context, target.path, self.stats)
        except Exception as exc:
            self.errors.append(str(exc))
            await context.abort(grpc.StatusCode.INTERNAL, f"export failed: {exc}")

    # -- attaching to the daemon --------------------------------------------------------------

    def grpc_metadata(self) -> list[tuple[str, str]]:
        """Metadata for ``Control.Session`` (lower-case keys, one per advertised method)."""
        md = [
            ("x-docker-expose-session-uuid", self.session_id),
            ("x-docker-expose-session-name", "wfe"),
            ("x-docker-expose-session-sharedkey", self.shared_key),
        ]
        md += [("x-docker-expose-session-grpc-method", m) for m in self.methods]
        return md

    async def attach_control(self, stub: Any) -> None:
        """Bridge the server onto a ``Control.Session`` stream (standalone buildkitd)."""
        reader, writer = await asyncio.open_unix_connection(self.socket_path)

        async def requests() -> AsyncIterator[control_pb2.BytesMessage]:
            while data := await reader.read(PUMP_CHUNK):
                yield control_pb2.BytesMessage(data=data)

        try:
            call = stub.Session(requests(), metadata=self.grpc_metadata())
        except BaseException:
            writer.close()
            raise
        self._call = call

        async def pump() -> None:
            try:
                async for message in call:
                    writer.write(message.data)
                    await writer.drain()
            except (grpc.aio.AioRpcError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        self._attach_task = asyncio.ensure_future(pump())

    async def attach_docker(self, engine: DockerEngine) -> None:
        """Bridge the server onto Docker Engine's ``POST /session`` upgrade."""
        headers = [
            ("X-Docker-Expose-Session-Uuid", self.session_id),
            ("X-Docker-Expose-Session-Name", "wfe"),
            ("X-Docker-Expose-Session-Sharedkey", self.shared_key),
        ]
        headers += [("X-Docker-Expose-Session-Grpc-Method", m) for m in self.methods]
        upgrade = asyncio.ensure_future(
            asyncio.to_thread(engine.upgrade_socket, "/session", headers)
        )
        try:
            upstream, pending = await asyncio.shield(upgrade)
        except EngineHTTPError as exc:
            raise SessionError(f"Docker Engine refused the build session: {exc.message}") from None
        except asyncio.CancelledError:
            # the thread cannot be stopped: close the upgraded socket it may still return, or
            # the engine keeps a session open for a build that is gone
            upgrade.add_done_callback(_close_upgraded_socket)
            raise
        local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            local.connect(self.socket_path)
            self._splice = ThreadedSplice(upstream, local, pending)
        except OSError:
            local.close()
            upstream.close()
            raise

    async def close(self) -> None:
        """Detach from the daemon, stop the server and remove the socket directory."""
        if self._call is not None:
            self._call.cancel()
        if self._splice is not None:
            await self._splice.close()
            self._splice = None
        if self._attach_task is not None:
            self._attach_task.cancel()
            with contextlib.suppress(BaseException):
                await self._attach_task
            self._attach_task = None
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            LIVE_DIRECTORIES.discard(self.directory)
            self.directory = ""


def _close_upgraded_socket(done: asyncio.Future[tuple[socket.socket, bytes]]) -> None:
    if not done.cancelled() and done.exception() is None:
        done.result()[0].close()


def shared_key_for(path: Path) -> str:
    """A stable per-directory key: the daemon keys its incremental-upload cache on it."""
    import hashlib

    return hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:32]


def random_id() -> str:
    return pysecrets.token_hex(12)


__all__ = [
    "OutputTarget",
    "RegistryCredentials",
    "SessionServer",
    "SessionService",
    "random_id",
    "shared_key_for",
]
