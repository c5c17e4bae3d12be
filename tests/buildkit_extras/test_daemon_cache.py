"""Inline cache against Docker Engine's embedded BuildKit (harness).

Build with ``cache_to: [type=inline]`` into Docker's image store, push it to the harness
registry, prune the builder cache, then build again with
``cache_from: [type=registry,ref=<that image>]``: the RUN step must come from the cache (same
random stamp, vertex reported cached). The pushed image config carries the inline cache
metadata (``moby.buildkit.cache.v0``).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest
from wfe_buildkit.cache_options import parse_cache_list
from wfe_buildkit.client import Client, Export

from tests.buildkit_extras.daemon import Recorded, build, docker_address
from tests.harness import DockerDaemon, RegistryServer, TestImages

pytestmark = pytest.mark.daemon

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])


def registry_json(url: str, accept: str = "") -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        data = json.loads(response.read())
    assert isinstance(data, dict)
    return data


async def test_inline_cache_round_trip(
    docker_daemon: DockerDaemon, registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {test_images.ref('busybox')}\n"
        "RUN head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /stamp\n"
    )
    repo = f"wfe/inline-cache-{uuid.uuid4().hex[:8]}"
    tag = f"{registry.host}/{repo}:1"
    async with Client(docker_address(docker_daemon.socket)) as client:
        await build(client, ctx, [Export.moby([tag])], no_cache=True,
                    cache_exports=parse_cache_list(["type=inline"], "cache_to"))
        await client.push([tag])
        manifest = registry_json(f"{registry.url}/v2/{repo}/manifests/1", MANIFEST_TYPES)
        config_digest = manifest["config"]["digest"]  # type: ignore[index]
        config = registry_json(f"{registry.url}/v2/{repo}/blobs/{config_digest}")
        assert "moby.buildkit.cache.v0" in config

        # first stamp, through a local export of the same (cached) build
        await build(client, ctx, [Export.local(tmp_path / "first")])
        first = (tmp_path / "first" / "stamp").read_text()

        await client.prune(all=True)
        recorder = Recorded()
        await build(
            client, ctx, [Export.local(tmp_path / "again")], recorder=recorder,
            cache_imports=parse_cache_list([f"type=registry,ref={tag}"], "cache_from"),
        )
    assert (tmp_path / "again" / "stamp").read_text() == first
    assert any("RUN head -c 16" in name for name in recorder.cached()), recorder.cached()


async def test_without_cache_import_the_step_reruns(
    docker_daemon: DockerDaemon, registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    """The control: after a prune and without cache_from, RUN executes again."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {test_images.ref('busybox')}\n"
        "RUN head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /stamp2\n"
    )
    async with Client(docker_address(docker_daemon.socket)) as client:
        await build(client, ctx, [Export.local(tmp_path / "a")])
        await client.prune(all=True)
        recorder = Recorded()
        await build(client, ctx, [Export.local(tmp_path / "b")], recorder=recorder)
    assert (tmp_path / "a" / "stamp2").read_text() != (tmp_path / "b" / "stamp2").read_text()
    assert not any("RUN head -c 16" in name for name in recorder.cached())


def write_empty_local_cache(directory: Path) -> int:
    """A valid local cache directory holding no records; returns the manifest's size."""
    import hashlib

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = directory / "blobs" / "sha256" / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"sha256:{digest}"

    config = b'{"layers":[],"records":[]}'
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.buildkit.cacheconfig.v0",
                   "digest": blob(config), "size": len(config)},
        "layers": [],
    }).encode()
    (directory / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": blob(manifest), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    }))
    return len(manifest)


async def test_local_cache_import_through_the_session_content_store(
    docker_daemon: DockerDaemon, registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    """Docker 20.10 (BuildKit v0.8) reads a type=local cache through our content service.

    It cannot export local cache, so the directory is made here (valid, no records): the
    build must succeed and the daemon must have read the cache manifest from the client.
    """
    from wfe_buildkit.cache_options import (
        local_cache_service,
        local_cache_stores,
        prepare_local_imports,
    )

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {test_images.ref('busybox')}\nRUN echo x > /x\n")
    expected = write_empty_local_cache(tmp_path / "cache")
    imports = prepare_local_imports(
        parse_cache_list([f"type=local,src={tmp_path / 'cache'}"], "cache_from")
    )
    assert imports[0].attrs["digest"].startswith("sha256:")
    service = local_cache_service(local_cache_stores(imports, ()))
    async with Client(docker_address(docker_daemon.socket)) as client:
        await build(client, ctx, [Export.local(tmp_path / "out")], services=[service],
                    cache_imports=imports, no_cache=True)
    assert (tmp_path / "out" / "x").read_text() == "x\n"
    assert service.servicer.bytes_read >= expected
