"""SSH forwarding: parsing, private agents, and the read-only ForwardAgent proxy over gRPC.

Uses real ``ssh-agent``, ``ssh-add`` and ``ssh-keygen`` from openssh-client. The proxy is
exercised like BuildKit does: a unix socket inside "the build" whose connections each become a
``ForwardAgent`` stream (metadata ``buildkit.ssh.id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from wfe_buildkit._pb import ssh_pb2, ssh_pb2_grpc
from wfe_buildkit.ssh_forward import (
    SSH_METHODS,
    SSHForwardError,
    SSHSpec,
    parse_ssh,
    ssh_service,
    start_private_agent,
    start_ssh_forwarding,
)

pytestmark = pytest.mark.skipif(
    shutil.which("ssh-agent") is None or shutil.which("ssh-keygen") is None,
    reason="openssh-client is not installed",
)


def keygen(path: Path, passphrase: str = "", comment: str = "wfe-test-key") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


def fingerprint(path: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], check=True, capture_output=True)
    return out.stdout.decode().split()[1]


async def ssh_add(sock: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "ssh-add", *args,
        env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


@contextlib.asynccontextmanager
async def build_side_socket(
    channel: grpc.aio.Channel, directory: Path, ssh_id: str = "default"
) -> AsyncIterator[Path]:
    """What BuildKit does in a RUN --mount=type=ssh: a socket forwarding to the session."""
    path = directory / f"bk-{ssh_id}.sock"
    stub = ssh_pb2_grpc.SSHStub(channel)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        call = stub.ForwardAgent(metadata=[("buildkit.ssh.id", ssh_id)])

        async def up() -> None:
            while data := await reader.read(65536):
                await call.write(ssh_pb2.BytesMessage(data=data))
            await call.done_writing()

        task = asyncio.ensure_future(up())
        try:
            async for message in call:
                writer.write(message.data)
                await writer.drain()
        except grpc.aio.AioRpcError:
            pass
        finally:
            task.cancel()
            writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        yield path
    finally:
        server.close()


def test_parse() -> None:
    assert parse_ssh([{"id": "default", "agent": True}]) == (SSHSpec("default", agent=True),)
    assert parse_ssh([{"paths": ["a", "b"]}]) == (
        SSHSpec("default", paths=(Path("a"), Path("b"))),
    )
    assert parse_ssh(None) == ()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("default", "expected a list"),
        ([{"id": "x"}], "set exactly one of agent: true or paths"),
        ([{"agent": True, "paths": ["k"]}], "set exactly one"),
        ([{"agent": "yes"}], "ssh[0].agent: must be true or false"),
        ([{"paths": "k"}], "ssh[0].paths: must be a list"),
        ([{"agent": True}, {"agent": True}], "'default' is already declared in ssh[0]"),
        ([{"agent": True, "socket": "/x"}], "unknown key(s) socket"),
    ],
)
def test_parse_errors(raw: Any, fragment: str) -> None:
    with pytest.raises(SSHForwardError) as info:
        parse_ssh(raw)
    assert fragment in str(info.value)


def test_agent_true_needs_ssh_auth_sock(tmp_path: Path) -> None:
    with pytest.raises(SSHForwardError, match="SSH_AUTH_SOCK is not set"):
        start_ssh_forwarding([SSHSpec(agent=True)], environ={})
    with pytest.raises(SSHForwardError, match="does not exist"):
        start_ssh_forwarding([SSHSpec(agent=True)], environ={"SSH_AUTH_SOCK": str(tmp_path / "x")})


def test_private_agent_lifecycle(tmp_path: Path) -> None:
    key = keygen(tmp_path / "id_ed25519")
    agent = start_private_agent("default", [key])
    try:
        listed = subprocess.run(
            ["ssh-add", "-l"], env={**os.environ, "SSH_AUTH_SOCK": str(agent.socket)},
            capture_output=True, check=True,
        ).stdout.decode()
        assert fingerprint(key) in listed
        assert oct(agent.directory.stat().st_mode & 0o777) == "0o700"
    finally:
        agent.stop()
    assert agent.process.poll() is not None
    assert agent.process.stderr is None or agent.process.stderr.closed
    assert not agent.directory.exists()


def test_private_agent_errors(tmp_path: Path) -> None:
    missing = r"ssh\[default\]: key file .*/missing does not exist"
    with pytest.raises(SSHForwardError, match=missing):
        start_private_agent("default", [tmp_path / "missing"])
    locked = keygen(tmp_path / "locked", passphrase="correct horse")
    with pytest.raises(SSHForwardError, match="protected by a passphrase"):
        start_private_agent("default", [locked])
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    with pytest.raises(SSHForwardError, match="cannot load key file"):
        start_private_agent("default", [garbage])
    leftovers = [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("wfe-ssh-*")
                 if p.stat().st_mtime > garbage.stat().st_mtime - 1]
    assert leftovers == []


async def test_forward_agent_lists_keys_and_is_read_only(serve: Any, tmp_path: Path) -> None:
    key = keygen(tmp_path / "id_ed25519")
    forwarding = await asyncio.to_thread(
        start_ssh_forwarding, [SSHSpec("default", paths=(key,))]
    )
    with forwarding:
        service = ssh_service(forwarding)
        assert tuple(service.methods) == SSH_METHODS
        async with serve(service) as channel, build_side_socket(channel, tmp_path) as sock:
            stub = ssh_pb2_grpc.SSHStub(channel)
            await stub.CheckAgent(ssh_pb2.CheckAgentRequest(ID="default"))
            await stub.CheckAgent(ssh_pb2.CheckAgentRequest(ID=""))  # "" means default
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.CheckAgent(ssh_pb2.CheckAgentRequest(ID="deploy"))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            assert "no SSH agent is configured for id 'deploy'" in (info.value.details() or "")

            code, out = await ssh_add(sock, "-l")
            assert code == 0, out
            assert fingerprint(key) in out
            # Mutations are refused by the proxy; the key stays.
            code, out = await ssh_add(sock, "-D")
            assert code != 0
            other = keygen(tmp_path / "other")
            code, out = await ssh_add(sock, str(other))
            assert code != 0
            code, out = await ssh_add(sock, "-l")
            assert fingerprint(key) in out and fingerprint(other) not in out
        assert service.servicer.refused >= 2
        assert service.servicer.forwarded >= 2
        agent_dir = forwarding.private_agents[0].directory
    assert not agent_dir.exists()


async def test_forward_agent_user_agent_and_unknown_id(serve: Any, tmp_path: Path) -> None:
    """agent: true forwards $SSH_AUTH_SOCK; a stream for an undeclared id is refused."""
    key = keygen(tmp_path / "k")
    user_agent = start_private_agent("user", [key])  # stands in for the user's agent
    try:
        forwarding = start_ssh_forwarding(
            [SSHSpec("default", agent=True)], environ={"SSH_AUTH_SOCK": str(user_agent.socket)}
        )
        assert forwarding.sockets == {"default": user_agent.socket}
        async with serve(ssh_service(forwarding)) as channel:
            async with build_side_socket(channel, tmp_path) as sock:
                code, out = await ssh_add(sock, "-l")
                assert code == 0 and fingerprint(key) in out
            async with build_side_socket(channel, tmp_path, "nope") as sock:
                code, out = await ssh_add(sock, "-l")
                assert code != 0
        forwarding.close()  # nothing to stop: the user's agent is not ours
        assert user_agent.process.poll() is None
    finally:
        user_agent.stop()


def test_problems_are_located_per_entry() -> None:
    with pytest.raises(SSHForwardError) as info:
        parse_ssh([{"agent": True}, {"id": "x"}])
    assert [path for path, _ in info.value.problems] == [("ssh", 1)]


async def test_step_stops_private_agent_when_cancelled_during_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step cancelled while its agents start (a timeout, Ctrl-C) must not leave them running."""
    import time

    from wfe_buildkit import executor, ssh_forward

    key = keygen(tmp_path / "id_ed25519")
    started: list[Any] = []
    real_start = ssh_forward.start_ssh_forwarding

    def slow_start(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)
        forwarding = real_start(*args, **kwargs)
        started.append(forwarding)
        return forwarding

    monkeypatch.setattr(ssh_forward, "start_ssh_forwarding", slow_start)
    task = asyncio.ensure_future(
        executor._start_forwarding([SSHSpec(id="default", paths=(key,))], tmp_path)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(started) == 1
    assert not started[0].private_agents
    directory = Path(started[0].sockets["default"]).parent
    assert not directory.exists()


async def test_client_ssh_agents_are_forwarded_read_only(tmp_path: Path) -> None:
    """``Client.build(ssh_agents=...)`` (the session's built-in SSH service) is read-only too."""
    from wfe_buildkit.session import SessionServer

    key = keygen(tmp_path / "id_ed25519")
    agent = start_private_agent("default", [key])
    try:
        async with SessionServer(ssh_agents={"default": str(agent.socket)}) as session:
            assert set(SSH_METHODS) <= set(session.methods)
            async with grpc.aio.insecure_channel(f"unix:{session.socket_path}") as channel:
                stub = ssh_pb2_grpc.SSHStub(channel)
                await stub.CheckAgent(ssh_pb2.CheckAgentRequest(ID="default"))
                async with build_side_socket(channel, tmp_path) as sock:
                    code, out = await ssh_add(sock, "-D")
                    assert code != 0
                    code, out = await ssh_add(sock, "-l")
                    assert code == 0, out
                    assert fingerprint(key) in out
    finally:
        agent.stop()
