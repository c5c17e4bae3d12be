"""``moby`` export, then push through the Engine API: digest = the registry manifest digest."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from wfe_buildkit.client import Client, Export, PushFailed, RegistryCredentials

from tests.buildkit.trees import make_tree
from tests.harness import RegistryServer

pytestmark = pytest.mark.daemon

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def _registry_digest(host: str, name: str, tag: str, auth: tuple[str, str] | None = None) -> str:
    request = urllib.request.Request(
        f"http://{host}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
    )
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        json.loads(response.read())
        return str(response.headers["Docker-Content-Digest"])


async def test_push_two_tags(
    tmp_path: Path, bk_address: str, busybox: str, registry: RegistryServer
) -> None:
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\nCOPY f /f\n", "f": "pushed\n"})
    tags = [f"{registry.host}/wfe/bkpush:1", f"{registry.host}/wfe/bkpush:latest"]
    async with Client(bk_address) as bk:
        result = await bk.build(tmp_path, exports=[Export.moby(tags)])
        pushed = await bk.push(tags)
    assert result.digest and result.digest.startswith("sha256:")
    assert pushed[tags[0]] == _registry_digest(registry.host, "wfe/bkpush", "1")
    assert pushed[tags[1]] == pushed[tags[0]]


async def test_push_with_credentials(
    tmp_path: Path, bk_address: str, busybox: str, auth_registry: RegistryServer
) -> None:
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\nLABEL auth=yes\n"})
    tag = f"{auth_registry.host}/wfe/bkauth:1"
    creds = {auth_registry.host: RegistryCredentials(auth_registry.username,
                                                     auth_registry.password)}
    async with Client(bk_address) as bk:
        await bk.build(tmp_path, exports=[Export.moby([tag])])
        with pytest.raises(PushFailed) as info:
            await bk.push([tag])
        assert auth_registry.password not in str(info.value)
        pushed = await bk.push([tag], creds)
    expected = _registry_digest(
        auth_registry.host, "wfe/bkauth", "1", (auth_registry.username, auth_registry.password)
    )
    assert pushed[tag] == expected
