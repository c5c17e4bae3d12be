"""A TLS-terminating relay for tests: listens on 127.0.0.1 with a server certificate and
forwards each connection's plaintext to a unix socket.

Put it in front of any plaintext gRPC endpoint on a unix socket (a grpc.aio server in unit
tests; the core client's Docker ``/grpc`` upgrade relay or a standalone buildkitd socket in
daemon tests) to exercise ``tcp://`` + TLS. ALPN offers ``h2``, which grpcio requires.
With ``client_ca`` set the relay demands a client certificate signed by it (mutual TLS, like
``buildkitd --tlscacert``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

CHUNK = 256 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError, ssl.SSLError):
        pass


class TLSRelay:
    """``async with TLSRelay(target, cert, key, client_ca=...) as relay: relay.port``."""

    def __init__(
        self,
        target_socket: str | Path,
        server_cert: Path,
        server_key: Path,
        *,
        client_ca: Path | None = None,
    ) -> None:
        self.target_socket = str(target_socket)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(server_cert, server_key)
        self.context.set_alpn_protocols(["h2"])
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(client_ca)
        self.port = 0
        self.connections = 0
        self.handshake_errors: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def __aenter__(self) -> TLSRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=5
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        try:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(self.target_socket)
            except OSError:
                writer.close()
                return
            try:
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
            finally:
                for w in (writer, up_writer):
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()
        except asyncio.CancelledError:
            writer.close()
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
            self._server = None
