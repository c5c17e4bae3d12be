"""The same client against a standalone buildkitd, when one is installed (not in CI).

CI has only Docker Engine's embedded BuildKit; these tests run when ``$WFE_BUILDKITD`` names a
buildkitd binary (or ``/opt/buildkit/bin/buildkitd`` exists) and are skipped otherwise. They
cover what only buildkitd has: ``Control.Session``, ``Info``, the ``image`` exporter with push,
and the ``oci``/``docker`` tarball exporters. A private buildkitd is started per module in a
temp dir (OCI worker, host network for RUN) and stopped by PID; nothing stays mounted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from wfe_buildkit.client import BuildFailed, Client, Export

from tests.buildkit.trees import make_tree, snapshot
from tests.harness import RegistryServer
from tests.harness.mounts import unmount_all

pytestmark = pytest.mark.daemon

BINARY = os.environ.get("WFE_BUILDKITD") or "/opt/buildkit/bin/buildkitd"


@pytest.fixture(scope="module")
def buildkitd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not os.access(BINARY, os.X_OK) or os.geteuid() != 0:
        pytest.skip(f"standalone buildkitd not available ({BINARY}); set WFE_BUILDKITD")
    root = tmp_path_factory.mktemp("buildkitd")
    socket_path = root / "buildkitd.sock"
    log = (root / "buildkitd.log").open("wb")
    proc = subprocess.Popen(
        [BINARY, "--root", str(root / "state"), "--addr", f"unix://{socket_path}",
         "--oci-worker=true", "--containerd-worker=false", "--oci-worker-net=host"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            assert proc.poll() is None, (root / "buildkitd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "buildkitd did not start"
            time.sleep(0.05)
        address = f"unix://{socket_path}"

        async def ready() -> None:
            async with Client(address) as bk:
                await bk.wait_for_ready(timeout=30)

        asyncio.run(ready())
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        unmount_all(root)
        shutil.rmtree(root / "state", ignore_errors=True)


def _context(root: Path, base: str) -> Path:
    make_tree(
        root,
        {
            "Dockerfile": f"FROM {base}\nCOPY . /ctx\nRUN echo standalone > /done\n",
            "x.sh": ("exec", "#!/bin/sh\n"),
            "l": ("link", "x.sh"),
            "d/e": None,
        },
    )
    return root


async def test_info_and_local_export_over_control_session(
    tmp_path: Path, buildkitd: str, busybox: str, no_session_leaks: object
) -> None:
    context = _context(tmp_path / "ctx", busybox)
    async with Client(buildkitd) as bk:
        info = await bk.info()
        assert info is not None and info.version.startswith("v")
        await bk.build(context, exports=[Export.local(tmp_path / "out")])
    assert snapshot(tmp_path / "out" / "ctx") == snapshot(context)
    assert (tmp_path / "out" / "done").read_text() == "standalone\n"


async def test_image_push_and_tarball_exporters(
    tmp_path: Path, buildkitd: str, busybox: str, registry: RegistryServer
) -> None:
    context = _context(tmp_path / "ctx", busybox)
    tag = f"{registry.host}/wfe/standalone:1"
    async with Client(buildkitd) as bk:
        pushed = await bk.build(context, exports=[Export.image([tag], push=True)])
        oci = await bk.build(context, exports=[Export.oci(tmp_path / "oci.tar", [tag])])
        docker = await bk.build(context, exports=[Export.docker(tmp_path / "d.tar", [tag])])
    request = urllib.request.Request(
        f"http://{registry.host}/v2/wfe/standalone/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                 "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert pushed.digest == response.headers["Docker-Content-Digest"]
    assert pushed.config_digest and pushed.config_digest != pushed.digest
    with tarfile.open(tmp_path / "oci.tar") as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert index["manifests"][0]["digest"] == oci.digest
    with tarfile.open(tmp_path / "d.tar") as tar:
        assert "manifest.json" in tar.getnames()
    assert docker.config_digest == oci.config_digest


async def test_failure_has_location_and_output(
    tmp_path: Path, buildkitd: str, busybox: str
) -> None:
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\n\nRUN echo failing-out && exit 4\n"})
    async with Client(buildkitd) as bk:
        with pytest.raises(BuildFailed) as info:
            await bk.build(tmp_path)
    assert info.value.exit_code == 4 and info.value.location == "Dockerfile:3"
    assert "failing-out" in info.value.logs
