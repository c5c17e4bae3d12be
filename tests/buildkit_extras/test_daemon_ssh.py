"""SSH agent forwarding against Docker Engine's embedded BuildKit (harness).

``RUN --mount=type=ssh ssh-add -l`` must list the key. The busybox test image has no
ssh-add, so the host's ssh-add, its shared libraries and the dynamic loader are copied into
the build context and run through the loader (x86-64 Debian layout).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from wfe_buildkit.client import BuildFailed, Client, Export
from wfe_buildkit.ssh_forward import SSHSpec, ssh_service, start_ssh_forwarding

from tests.buildkit_extras.daemon import build, docker_address
from tests.harness import DockerDaemon, RegistryServer, TestImages

pytestmark = pytest.mark.daemon

SSH_ADD = shutil.which("ssh-add")
LOADER = Path("/lib64/ld-linux-x86-64.so.2")


def portable_ssh_add(directory: Path) -> None:
    """ssh-add plus everything ``ldd`` lists, flat in ``directory``."""
    if SSH_ADD is None or not LOADER.exists():
        pytest.skip("needs ssh-add and the x86-64 glibc loader on the host")
    directory.mkdir()
    shutil.copy2(SSH_ADD, directory / "ssh-add")
    out = subprocess.run(["ldd", SSH_ADD], capture_output=True, check=True).stdout.decode()
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            shutil.copy2(path, directory / Path(path).name)


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wfe-ssh-test",
                    "-f", str(path)], check=True)
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, check=True)
    return out.stdout.decode().split()[1]


async def test_ssh_add_lists_the_forwarded_key(
    docker_daemon: DockerDaemon, registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    portable_ssh_add(ctx / "sshtools")
    fingerprint = keygen(tmp_path / "id_ed25519")
    (ctx / "Dockerfile").write_text(
        f"FROM {test_images.ref('busybox')}\n"
        "COPY sshtools /sshtools\n"
        "RUN --mount=type=ssh /sshtools/ld-linux-x86-64.so.2 --library-path /sshtools "
        "/sshtools/ssh-add -l > /keys.txt 2>&1; echo rc=$? >> /keys.txt\n"
    )
    forwarding = await asyncio.to_thread(
        start_ssh_forwarding, [SSHSpec("default", paths=(tmp_path / "id_ed25519",))]
    )
    with forwarding:
        service = ssh_service(forwarding)
        async with Client(docker_address(docker_daemon.socket)) as client:
            await build(client, ctx, [Export.local(tmp_path / "out")], services=[service],
                        no_cache=True)
        agent_dir = forwarding.private_agents[0].directory
    keys = (tmp_path / "out" / "keys.txt").read_text()
    assert fingerprint in keys and "rc=0" in keys, keys
    assert service.servicer.forwarded >= 1
    assert not agent_dir.exists()  # the private agent is gone with its keys


async def test_undeclared_ssh_id_fails_clearly(
    docker_daemon: DockerDaemon, registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {test_images.ref('busybox')}\nRUN --mount=type=ssh,id=deploy,required true\n"
    )
    forwarding = start_ssh_forwarding([])
    async with Client(docker_address(docker_daemon.socket)) as client:
        with pytest.raises(BuildFailed) as info:
            await build(client, ctx, [Export.local(tmp_path / "out")],
                        services=[ssh_service(forwarding)], no_cache=True)
    assert "no SSH agent is configured for id 'deploy'" in str(info.value)
