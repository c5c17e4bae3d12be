"""In-process gRPC plumbing for the servicer unit tests, and a leak check for every test.

``serve(service)`` starts a grpc.aio server on a unix socket in a private temp dir with the
given session plug-in (anything with ``register(server)``) and yields a channel to it, the way
BuildKit would call the session. After each test no child process (ssh-agent, credential
helper) and no private agent directory may be left behind.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
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


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    before = set(Path(tempfile.gettempdir()).glob("wfe-ssh-*"))
    yield
    from tests.harness import non_harness_children

    children = [p for p in non_harness_children() if p.is_running()]
    assert not children, f"processes left behind: {[p.cmdline() for p in children]}"
    left = set(Path(tempfile.gettempdir()).glob("wfe-ssh-*")) - before
    assert not left, f"private ssh-agent directories left behind: {sorted(left)}"


@pytest.fixture
def serve() -> Callable[[Any], contextlib.AbstractAsyncContextManager[grpc.aio.Channel]]:
    return _serve
