"""In-process gRPC plumbing for the servicer unit tests.

``serve(service)`` starts a grpc.aio server on a unix socket in a private temp dir with the
given session plug-in (anything with ``register(server)``) and yields a channel to it, the way
BuildKit would call the session.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest


@contextlib.asynccontextmanager
async def _serve(service: Any) -> AsyncIterator[grpc.aio.Channel]:
    with tempfile.TemporaryDirectory(prefix="wfe-bkx-") as directory:
        server = grpc.aio.server()
        service.register(server)
        path = Path(directory) / "s.sock"
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        channel = grpc.aio.insecure_channel(f"unix:{path}")
        try:
            yield channel
        finally:
            await channel.close()
            await server.stop(grace=None)


@pytest.fixture
def serve() -> Callable[[Any], contextlib.AbstractAsyncContextManager[grpc.aio.Channel]]:
    return _serve
