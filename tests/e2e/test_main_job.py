"""The main job end to end with the `wfe` CLI: build + push with BuildKit, test with containerd.

Runs ``examples/build-and-run.yaml`` exactly as users do (``wfe run ... --json``) against the
harness daemons, and checks what a user would: the digest the build step reports is the manifest
digest the registry serves, it flowed into the containerd step, and the test step's
``##wfe[output]`` result reached the report step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.harness import ContainerdDaemon, DockerDaemon, RegistryServer, TestImages

ROOT = Path(__file__).resolve().parents[2]


def _wfe(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    wfe = Path(sys.executable).with_name("wfe")
    return subprocess.run(
        [str(wfe), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, NO_COLOR="1"),
    )


def test_build_push_and_run(
    docker_daemon: DockerDaemon,
    containerd_daemon: ContainerdDaemon,
    registry: RegistryServer,
    test_images: TestImages,
) -> None:
    test_images.ref("busybox")  # the Dockerfile's base image, pushed to `registry`
    result = _wfe(
        "run", "examples/build-and-run.yaml", "--json",
        "-i", f"registry={registry.host}",
        "-i", f"buildkit_addr=docker+unix://{docker_daemon.socket}",
        "-i", f"containerd_addr={containerd_daemon.address}",
        "-i", "tag=e2e",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    steps = summary["steps"]
    assert summary["status"] == "succeeded"
    assert {name: s["state"] for name, s in steps.items()} == dict.fromkeys(
        ("build", "test", "report"), "succeeded"
    )

    digest = steps["build"]["outputs"]["digest"]
    request = urllib.request.Request(
        f"http://{registry.host}/v2/wfe/demo-app/manifests/e2e",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                 "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Docker-Content-Digest"] == digest

    assert steps["test"]["outputs"]["passed"] == "3"
    assert steps["test"]["outputs"]["failed"] == "0"
    assert steps["test"]["outputs"]["exit_code"] == 0
    report = steps["report"]["outputs"]["stdout"]
    assert f"demo-app {digest}: 3 tests passed, 0 failed" in report


def test_demo_command_runs_and_cleans_up() -> None:
    """`nox -s demo` runs `python -m tests.demo`: its own daemons, the workflow, teardown."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.demo"], cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "workflow succeeded" in result.stdout
    assert "3 tests passed, 0 failed" in result.stdout
    base = result.stdout.rsplit("nothing left under", 1)[1].strip()
    assert not Path(base).exists()
