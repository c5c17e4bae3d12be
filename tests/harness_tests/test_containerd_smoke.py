"""The busybox and rich images run on the harness containerd (driven with ``ctr`` for now)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.harness import ContainerdDaemon, TestImages
from tests.harness import images as harness_images

pytestmark = pytest.mark.daemon
NAMESPACE = "wfe-harness-test"


def ctr(daemon: ContainerdDaemon, *args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        ["ctr", "--address", daemon.address, "-n", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"ctr {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def run(daemon: ContainerdDaemon, ref: str, *command: str, user: str | None = None) -> str:
    """Pull ``ref`` and run ``command`` in a throwaway container (runc state kept private)."""
    ctr(daemon, "image", "pull", "--plain-http", ref)
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    extra = ["--runc-root", f"{daemon.state}/runc", "--fifo-dir", f"{daemon.state}/fifo"]
    if user:
        extra += ["--user", user]
    try:
        return ctr(daemon, "run", "--rm", *extra, ref, name, *command)
    finally:
        subprocess.run(
            ["ctr", "--address", daemon.address, "-n", NAMESPACE, "container", "rm", name],
            capture_output=True,
            check=False,
        )


def test_busybox_echo(containerd_daemon: ContainerdDaemon, test_images: TestImages) -> None:
    out = run(containerd_daemon, test_images.ref("busybox"), "echo", "hello")
    assert out.strip() == "hello"


def test_rich_image_config(containerd_daemon: ContainerdDaemon, test_images: TestImages) -> None:
    """ctr applies the image's User (resolved via /etc/passwd), Env and WorkingDir."""
    out = run(
        containerd_daemon, test_images.ref("rich"), "sh", "-c", 'id -u; pwd; echo "$GREETING"'
    )
    assert out.split("\n")[:3] == [
        str(harness_images.RICH_UID),
        harness_images.RICH_WORKDIR,
        "hello from rich",
    ]


def test_pull_by_digest_matches(
    containerd_daemon: ContainerdDaemon, test_images: TestImages
) -> None:
    """The pushed manifest digest is the one the harness computed (skopeo preserved it)."""
    ctr(containerd_daemon, "image", "pull", "--plain-http", test_images.pinned("busybox"))
    listing = ctr(containerd_daemon, "image", "ls")
    assert test_images.digest("busybox") in listing


def test_multiarch_index_has_both_platforms(
    containerd_daemon: ContainerdDaemon, test_images: TestImages
) -> None:
    ref = test_images.ref("multiarch")
    ctr(containerd_daemon, "image", "pull", "--plain-http", "--all-platforms", ref)
    out = ctr(containerd_daemon, "image", "ls")
    line = next(row for row in out.splitlines() if row.startswith(ref))
    assert "linux/amd64" in line and "linux/arm64" in line
