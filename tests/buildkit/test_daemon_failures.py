"""Failures against the real daemon, with the message content asserted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil
import pytest
from wfe_buildkit.client import BuildFailed, Client, DaemonConnectionError, Export, InvalidRequest

from tests.buildkit.trees import make_tree
from tests.harness.ports import free_port

pytestmark = pytest.mark.daemon


async def test_run_exit_1_shows_instruction_line_and_output(
    tmp_path: Path, bk_address: str, busybox: str, no_session_leaks: object
) -> None:
    make_tree(
        tmp_path,
        {
            "Dockerfile": (
                f"FROM {busybox}\n"
                "# the next step fails\n"
                "RUN echo about to fail && echo to-stderr >&2 && exit 1\n"
            )
        },
    )
    async with Client(bk_address) as bk:
        with pytest.raises(BuildFailed) as info:
            await bk.build(tmp_path, network="none", exports=[Export.local(tmp_path / "out")])
    error = info.value
    assert error.exit_code == 1
    assert error.vertex is not None and "RUN echo about to fail" in error.vertex
    assert error.location == "Dockerfile:3"
    assert "about to fail" in error.logs and "to-stderr" in error.logs
    text = str(error)
    assert "exit code: 1" in text and "(Dockerfile:3)" in text and "| about to fail" in text


async def test_syntax_error_names_the_line(
    tmp_path: Path, bk_address: str, busybox: str
) -> None:
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\nCOPY a /a\nFROBNICATE now\n", "a": "a"})
    async with Client(bk_address) as bk:
        with pytest.raises(BuildFailed) as info:
            await bk.build(tmp_path)
    assert info.value.syntax_error
    assert info.value.location == "Dockerfile:3"
    assert str(info.value).startswith("Dockerfile syntax error at Dockerfile:3:")
    assert "unknown instruction" in str(info.value).lower()


async def test_missing_dockerfile_and_context(tmp_path: Path, bk_address: str) -> None:
    async with Client(bk_address) as bk:
        with pytest.raises(InvalidRequest, match=r"context directory does not exist: .*nope"):
            await bk.build(tmp_path / "nope")
        with pytest.raises(InvalidRequest, match=r"Dockerfile not found: .*Dockerfile"):
            await bk.build(tmp_path)


@pytest.mark.parametrize(
    "address",
    [
        "docker+unix:///nonexistent/docker.sock",
        "unix:///nonexistent/buildkitd.sock",
        "tcp://127.0.0.1:{port}",
    ],
)
async def test_unreachable_daemon_fails_fast_with_address(address: str) -> None:
    address = address.format(port=free_port())
    started = time.monotonic()
    async with Client(address) as bk:
        with pytest.raises(DaemonConnectionError) as info:
            await bk.ping()
    assert time.monotonic() - started < 5.5
    assert address in str(info.value)
    assert "is " in str(info.value) or "check" in str(info.value)  # says what to check


async def test_not_buildkit_socket(tmp_path: Path) -> None:
    """A socket that answers something else entirely (here: nothing) fails within 5 s."""
    server = await asyncio.start_unix_server(lambda r, w: w.close(), path=str(tmp_path / "s"))
    try:
        async with Client(f"unix://{tmp_path / 's'}", connect_timeout=2) as bk:
            with pytest.raises(DaemonConnectionError, match=str(tmp_path / "s")):
                await bk.ping()
    finally:
        server.close()


def _marker_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(marker in part for part in cmdline):
            found.append(proc)
    return found


async def test_timeout_cancels_build_on_daemon(
    tmp_path: Path, bk_address: str, busybox: str, no_session_leaks: object
) -> None:
    marker = "4242.5"
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\nRUN sleep {marker}\n"})
    events: list[object] = []
    async with Client(bk_address) as bk:
        task = asyncio.ensure_future(
            bk.build(tmp_path, network="none", no_cache=True, progress=events.append)
        )
        deadline = time.monotonic() + 20
        while not _marker_processes(marker):
            assert time.monotonic() < deadline, "the RUN step never started"
            assert not task.done(), task
            await asyncio.sleep(0.1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(task, 0.5)
        # the RUN process goes away: the build was cancelled on the daemon
        deadline = time.monotonic() + 10
        while _marker_processes(marker):
            assert time.monotonic() < deadline, "build still running on the daemon"
            await asyncio.sleep(0.1)
        # and the daemon is immediately usable again
        assert await bk.ping()


async def test_default_network_on_bridgeless_daemon_gets_a_hint(
    tmp_path: Path, bk_address: str, busybox: str
) -> None:
    """The harness engine runs with --bridge=none: a RUN without a network mode explains it."""
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\nRUN echo needs-network-decision\n"})
    async with Client(bk_address) as bk:
        with pytest.raises(BuildFailed) as info:
            await bk.build(tmp_path, no_cache=True)
    assert "network bridge not found" in str(info.value)
    assert "hint: " in str(info.value) and "network: none" in str(info.value)


async def test_wait_for_ready_gives_up_at_deadline(tmp_path: Path) -> None:
    started = time.monotonic()
    async with Client(f"unix://{tmp_path}/not-yet.sock") as bk:
        with pytest.raises(DaemonConnectionError, match=r"not ready after 0.5s: no socket"):
            await bk.wait_for_ready(timeout=0.5)
    assert 0.4 < time.monotonic() - started < 3
