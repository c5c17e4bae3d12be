"""Fixtures for the BuildKit tests: the harness Docker Engine's embedded BuildKit.

Docker Engine 20.10's embedded BuildKit is the BuildKit CI has; the harness starts it with
``--bridge=none``, so every RUN in these tests builds with ``network: none``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import DockerDaemon, TestImages


@pytest.fixture(scope="session")
def bk_address(docker_daemon: DockerDaemon) -> str:
    """``docker+unix:///…/docker.sock`` of the harness engine."""
    return f"docker+unix://{docker_daemon.socket}"


@pytest.fixture(scope="session")
def busybox(test_images: TestImages) -> str:
    """The harness busybox image on the plain registry (``127.0.0.1:PORT/wfe/busybox:latest``)."""
    return test_images.ref("busybox")


@pytest.fixture
def no_session_leaks() -> Iterator[None]:
    """Asserts after the test that this process left no session/relay dirs or splice threads."""
    import os
    import threading

    from wfe_buildkit.transport import LIVE_DIRECTORIES

    before = set(LIVE_DIRECTORIES)
    yield None
    leaked = LIVE_DIRECTORIES - before
    assert not leaked, f"live session/relay directories: {sorted(leaked)}"
    assert not [d for d in before if not os.path.exists(d)]
    threads = [t.name for t in threading.enumerate() if t.name.startswith("wfe-bk")]
    assert not threads, f"splice threads still running: {threads}"
