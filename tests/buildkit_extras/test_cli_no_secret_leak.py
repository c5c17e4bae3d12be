"""Secret values never reach the CLI: ``wfe run`` output, ``--json`` and error messages.

A real run against Docker Engine's embedded BuildKit (harness) of a workflow whose RUN prints
its secret, pulls its base image from the authenticated registry (password from an env
variable) and then fails while printing the secret once more. Everything the CLI wrote is
grepped for the secret and the registry password. Needs the buildkit step's use of the
build_secrets/registry_auth plug-ins.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import DockerDaemon, RegistryServer, TestImages

pytestmark = pytest.mark.daemon

SECRET = "cli-leak-check-7f3e91d2"


def wfe(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["wfe", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False,
    )


@pytest.mark.parametrize("fail", [False, True])
def test_secret_and_password_never_printed(
    docker_daemon: DockerDaemon, auth_registry: RegistryServer, test_images: TestImages,
    tmp_path: Path, fail: bool,
) -> None:
    image = test_images.ref("busybox", auth=True)
    (tmp_path / "ctx").mkdir()
    tail = " && exit 3" if fail else ""
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f"FROM {image}\n"
        f"RUN --mount=type=secret,id=tok cat /run/secrets/tok && echo{tail}\n"
    )
    (tmp_path / "wf.yaml").write_text(
        "workflow:\n"
        "  id: leak\n"
        "  version: 1\n"
        "  steps:\n"
        "    - name: build\n"
        "      type: buildkit\n"
        "      config:\n"
        "        context: ctx\n"
        f"        buildkit_addr: docker+unix://{docker_daemon.socket}\n"
        "        network: none\n"
        "        no_cache: true\n"
        "        output_type: local\n"
        "        output_dest: out\n"
        "        registry_auth:\n"
        f"          \"{auth_registry.host}\":\n"
        f"            username: {auth_registry.username}\n"
        "            password_env: LEAK_REG_PW\n"
        "        secrets:\n"
        "          - {id: tok, env: LEAK_SECRET}\n"
    )
    env = {**os.environ, "LEAK_SECRET": SECRET, "LEAK_REG_PW": auth_registry.password,
           "TERM": "dumb"}
    plain = wfe(["run", "wf.yaml"], env, tmp_path)
    as_json = wfe(["run", "wf.yaml", "--json"], env, tmp_path)
    for result in (plain, as_json):
        assert result.returncode == (1 if fail else 0), result.stdout + result.stderr
        everything = result.stdout + result.stderr
        assert SECRET not in everything
        assert auth_registry.password not in everything
    data = json.loads(as_json.stdout)
    stdout = data["steps"]["build"]["outputs"]["stdout"]
    assert "***" in stdout  # the RUN did print it, masked
    if fail:
        error = data["steps"]["build"]["error"] or ""
        assert "exit code 3" in error
        assert "| ***" in error  # the failing RUN's last output line, masked
