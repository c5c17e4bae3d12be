"""The few Docker Engine API calls the client needs, over the engine's unix socket.

Docker Engine embeds BuildKit and exposes it by upgrading HTTP/1.1 connections to HTTP/2:
``POST /grpc`` makes the engine a gRPC server (the Control API) and ``POST /session`` makes it
the gRPC *client* of our session server. Besides those upgrades the client pings the engine
(so that an unreachable engine is reported clearly and fast) and pushes tags after a ``moby``
export. This is a deliberately tiny HTTP/1.1 client: one request per connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from wfe_buildkit.errors import DaemonConnectionError, PushFailed

_MAX_HEADER = 64 * 1024


class EngineHTTPError(Exception):
    """A non-success HTTP answer from the engine; ``message`` is the JSON ``message`` field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise EngineHTTPError(0, "response header too large") from None
    except asyncio.IncompleteReadError:
        raise EngineHTTPError(0, "connection closed before a response was received") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise EngineHTTPError(0, f"not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _body_chunks(
    reader: asyncio.StreamReader, headers: Mapping[str, str]
) -> AsyncIterator[bytes]:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readline()
            if not size_line:
                return
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)
    elif "content-length" in headers:
        remaining = int(headers["content-length"])
        while remaining > 0:
            data = await reader.read(min(remaining, 65536))
            if not data:
                return
            remaining -= len(data)
            yield data
    else:
        while data := await reader.read(65536):
            yield data


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", "")) or body.decode(errors="replace").strip()
    except (ValueError, AttributeError):
        return body.decode(errors="replace").strip()[:500]


class DockerEngine:
    """A Docker Engine reachable at the unix socket ``socket_path``."""

    def __init__(self, socket_path: str, address: str) -> None:
        self.socket_path = socket_path
        self.address = address

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_unix_connection(self.socket_path, limit=_MAX_HEADER)
        except FileNotFoundError:
            raise DaemonConnectionError(
                self.address,
                f"no socket at {self.socket_path}",
                "is dockerd running? set DOCKER_HOST or use docker+unix:///path/to/docker.sock",
            ) from None
        except PermissionError:
            raise DaemonConnectionError(
                self.address,
                f"permission denied on {self.socket_path}",
                "run as a user allowed to use the Docker socket",
            ) from None
        except OSError as exc:
            raise DaemonConnectionError(
                self.address, f"{exc.strerror or exc} ({self.socket_path})", "is dockerd running?"
            ) from None

    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
        """Send a body-less request; return status, headers and the open stream."""
        reader, writer = await self._connect()
        lines = [f"{method} {path} HTTP/1.1", "Host: docker", "Content-Length: 0"]
        lines += [f"{k}: {v}" for k, v in headers]
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            status, response_headers = await _read_head(reader)
        except BaseException:
            writer.close()
            raise
        return status, response_headers, reader, writer

    async def ping(self) -> str:
        """``GET /_ping``; returns the API version header."""
        status, headers, reader, writer = await self.request("GET", "/_ping")
        try:
            body = b"".join([c async for c in _body_chunks(reader, headers)])
        finally:
            writer.close()
        if status != 200:
            raise DaemonConnectionError(
                self.address, f"/_ping answered HTTP {status}: {_error_message(body)}"
            )
        return headers.get("api-version", "")

    async def get_json(self, path: str) -> tuple[int, Any]:
        """``GET path``; the status and the decoded JSON body (None when not JSON)."""
        status, headers, reader, writer = await self.request("GET", path)
        try:
            body = b"".join([c async for c in _body_chunks(reader, headers)])
        finally:
            writer.close()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    async def upgrade(
        self, path: str, headers: Sequence[tuple[str, str]] = ()
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """POST ``path`` with ``Upgrade: h2c``; return the raw stream after ``101``."""
        status, response_headers, reader, writer = await self.request(
            "POST", path, [("Connection", "Upgrade"), ("Upgrade", "h2c"), *headers]
        )
        if status != 101:
            try:
                body = b"".join([c async for c in _body_chunks(reader, response_headers)])
            finally:
                writer.close()
            raise EngineHTTPError(status, _error_message(body))
        return reader, writer

    def upgrade_socket(
        self, path: str, headers: Sequence[tuple[str, str]] = ()
    ) -> tuple[socket.socket, bytes]:
        """Blocking variant of :meth:`upgrade`: the raw socket and bytes read past the header."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise DaemonConnectionError(
                self.address, f"{exc.strerror or exc} ({self.socket_path})", "is dockerd running?"
            ) from None
        lines = [f"POST {path} HTTP/1.1", "Host: docker", "Content-Length: 0",
                 "Connection: Upgrade", "Upgrade: h2c"]
        lines += [f"{k}: {v}" for k, v in headers]
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EngineHTTPError(0, "connection closed before a response was received")
                data += chunk
                if len(data) > _MAX_HEADER:
                    raise EngineHTTPError(0, "response header too large")
            head, _, rest = data.partition(b"\r\n\r\n")
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if status != 101:
                raise EngineHTTPError(status, _error_message(rest) or status_line)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock, rest

    async def push(
        self,
        reference: str,
        auth: Mapping[str, str] | None,
        on_message: Any = None,
    ) -> str:
        """Push ``reference`` (``name:tag``); returns the manifest digest the registry got."""
        name, tag = split_tag(reference)
        identity = {"username": "", "password": "", "serveraddress": registry_host(name)}
        if auth:
            identity.update(
                username=auth.get("username", ""), password=auth.get("password", "")
            )
        token = base64.urlsafe_b64encode(json.dumps(identity).encode()).decode()
        from urllib.parse import quote

        path = f"/images/{quote(name, safe='/:')}/push?tag={quote(tag, safe='')}"
        status, headers, reader, writer = await self.request(
            "POST", path, [("X-Registry-Auth", token)]
        )
        digest = ""
        try:
            if status != 200:
                body = b"".join([c async for c in _body_chunks(reader, headers)])
                raise PushFailed(f"pushing {reference} failed: {_error_message(body)}")
            buffer = b""
            async for chunk in _body_chunks(reader, headers):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    digest = _push_line(reference, line, on_message) or digest
            digest = _push_line(reference, buffer, on_message) or digest
        finally:
            writer.close()
        if not digest:
            raise PushFailed(f"pushing {reference}: the engine reported no manifest digest")
        return digest


def _push_line(reference: str, line: bytes, on_message: Any) -> str:
    line = line.strip()
    if not line:
        return ""
    try:
        event = json.loads(line)
    except ValueError:
        return ""
    if event.get("error"):
        raise PushFailed(f"pushing {reference} failed: {event['error']}")
    if on_message is not None and event.get("status"):
        on_message(event)
    aux = event.get("aux") or {}
    return str(aux.get("Digest", ""))


def split_tag(reference: str) -> tuple[str, str]:
    """``host:5000/app:1`` -> (``host:5000/app``, ``1``); no tag means ``latest``."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def registry_host(name: str) -> str:
    """The registry host of an image name (Docker Hub for names without one)."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "https://index.docker.io/v1/"


__all__ = ["DockerEngine", "EngineHTTPError", "registry_host", "split_tag"]
