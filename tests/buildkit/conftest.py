"""Fixtures for the BuildKit tests: the harness Docker Engine's embedded BuildKit.

Docker Engine 20.10's embedded BuildKit is the BuildKit CI has; the harness starts it with
``--bridge=none``, so every RUN in these tests builds with ``network: none``.
"""

from __future__ import annotations

from pathlib import Path

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
def no_session_leaks(tmp_path: Path) -> object:
    """Asserts after the test that no session/relay temp dirs of this process are left."""
    import glob
    import tempfile

    pattern = [f"{tempfile.gettempdir()}/wfe-bks-*", f"{tempfile.gettempdir()}/wfe-bk-*"]
    before = {p for pat in pattern for p in glob.glob(pat)}
    yield None
    after = {p for pat in pattern for p in glob.glob(pat)}
    assert after - before == set(), f"leaked session directories: {sorted(after - before)}"
