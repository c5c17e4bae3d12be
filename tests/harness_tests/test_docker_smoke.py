"""Docker Engine answers on its private API socket."""

from __future__ import annotations

import json

import pytest

from tests.harness import DockerDaemon
from tests.harness.http_probe import unix_get

pytestmark = pytest.mark.daemon


def test_ping(docker_daemon: DockerDaemon) -> None:
    assert docker_daemon.host == f"unix://{docker_daemon.socket}"
    assert unix_get(docker_daemon.socket, "/_ping") == (200, b"OK")


def test_version(docker_daemon: DockerDaemon) -> None:
    status, body = unix_get(docker_daemon.socket, "/version")
    assert status == 200
    version = json.loads(body)
    assert version["ApiVersion"] >= "1.41"
    assert any(c["Name"] == "containerd" for c in version.get("Components", []))


def test_grpc_upgrade_answers(docker_daemon: DockerDaemon) -> None:
    """The embedded BuildKit endpoint exists: POST /grpc upgrades to h2c."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(docker_daemon.socket)
        sock.sendall(
            b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
            b"Upgrade: h2c\r\nContent-Length: 0\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]


async def test_buildkit_list_workers(docker_daemon: DockerDaemon) -> None:
    """BuildKit's ListWorkers answers through POST /grpc (via the wfe BuildKit client)."""
    client_module = pytest.importorskip("wfe_buildkit.client")
    async with client_module.Client(f"docker+unix://{docker_daemon.socket}") as client:
        workers = await client.ping()
    assert workers, "the embedded BuildKit reported no worker"
    assert any("linux/" in p for w in workers for p in w.platforms)
