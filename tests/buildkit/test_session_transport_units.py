"""Session and transport edge cases that need no daemon.

Cleanup when setup fails or is cancelled (session server, relay, upgraded socket), the
built-in Auth service's host matching and tcp:// targets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import grpc
import pytest
from wfe_buildkit.session import SessionServer
from wfe_buildkit.transport import LIVE_DIRECTORIES


class _BrokenService:
    methods: Sequence[str] = ("/example.Broken/Call",)

    def register(self, server: grpc.aio.Server) -> None:
        raise RuntimeError("cannot register")


async def test_failed_start_removes_socket_directory() -> None:
    before = set(LIVE_DIRECTORIES)
    server = SessionServer(services=[_BrokenService()])
    with pytest.raises(RuntimeError, match="cannot register"):
        async with server:
            pytest.fail("the body must not run")
    assert set(LIVE_DIRECTORIES) == before
    assert server.directory == ""
    assert server._server is None


async def test_close_after_start_removes_socket_directory() -> None:
    async with SessionServer() as server:
        directory = server.directory
        assert os.path.isdir(directory)
        assert directory in LIVE_DIRECTORIES
    assert not os.path.exists(directory)
    assert directory not in LIVE_DIRECTORIES


async def test_transport_close_removes_relay_when_channel_close_fails() -> None:
    from wfe_buildkit.address import parse_address
    from wfe_buildkit.transport import Transport, UpgradeRelay

    class _FailingChannel:
        async def close(self, grace: object) -> None:
            raise RuntimeError("channel close failed")

    transport = Transport(parse_address("docker+unix:///nonexistent/docker.sock"))
    assert transport.engine is not None
    relay = UpgradeRelay(transport.engine)
    transport.relay = relay
    transport._channel = _FailingChannel()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="channel close failed"):
        await transport.close()
    assert not os.path.exists(relay.directory)
    assert relay.directory not in LIVE_DIRECTORIES
    assert transport.relay is None


async def test_attach_docker_cancelled_during_upgrade_closes_the_socket() -> None:
    """The upgrade runs in a thread that cancellation cannot stop; its socket must not leak."""
    import asyncio
    import socket
    import time

    ours, theirs = socket.socketpair()

    class _SlowEngine:
        def upgrade_socket(self, path: str, headers: object) -> tuple[socket.socket, bytes]:
            time.sleep(0.3)
            return ours, b""

    task = asyncio.ensure_future(SessionServer().attach_docker(_SlowEngine()))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if ours.fileno() == -1:
            break
        await asyncio.sleep(0.02)
    assert ours.fileno() == -1
    theirs.close()


async def test_relay_that_fails_to_start_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    from wfe_buildkit.address import parse_address
    from wfe_buildkit.transport import Transport, UpgradeRelay

    async def ping() -> str:
        return "1.41"

    async def failing_start(self: UpgradeRelay) -> None:
        raise OSError("cannot listen")

    monkeypatch.setattr(UpgradeRelay, "start", failing_start)
    before = set(LIVE_DIRECTORIES)
    transport = Transport(parse_address("docker+unix:///nonexistent/docker.sock"))
    assert transport.engine is not None
    monkeypatch.setattr(transport.engine, "ping", ping)
    with pytest.raises(OSError, match="cannot listen"):
        await transport.channel()
    assert set(LIVE_DIRECTORIES) == before
    assert transport.relay is None
    await transport.close()


async def test_builtin_auth_matches_registry_spellings() -> None:
    """``Client.build(registry_auth=...)``: Docker Hub aliases, schemes and case all match."""
    from types import SimpleNamespace

    from wfe_buildkit.session import RegistryCredentials, _AuthService

    service = _AuthService(
        {
            "docker.io": RegistryCredentials("hub", "hub-secret"),
            "http://Registry.Example:5000": RegistryCredentials("me", "s3cret"),
        }
    )

    async def ask(host: str) -> tuple[str, str]:
        answer = await service.Credentials(SimpleNamespace(Host=host), None)
        return answer.Username, answer.Secret

    assert await ask("registry-1.docker.io") == ("hub", "hub-secret")
    assert await ask("registry.example:5000") == ("me", "s3cret")
    assert await ask("other.example") == ("", "")
    assert "s3cret" not in repr(RegistryCredentials("me", "s3cret"))


def test_tcp_target_keeps_ipv6_brackets() -> None:
    from wfe_buildkit.address import parse_address
    from wfe_buildkit.transport import tcp_target

    assert tcp_target(parse_address("tcp://[::1]:1234")) == "[::1]:1234"
    assert tcp_target(parse_address("tcp://127.0.0.1:1234")) == "127.0.0.1:1234"
    assert tcp_target(parse_address("tcp://buildkitd:1234")) == "buildkitd:1234"
