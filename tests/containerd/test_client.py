"""The library API (``wfe_containerd.client``) against the harness containerd and registries."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from wfe_containerd import gc
from wfe_containerd.client import Client, RunOptions, new_container_id
from wfe_containerd.credentials import Credentials
from wfe_containerd.errors import AuthError, ConnectError, ImageNotFoundError
from wfe_containerd.oci import Platform
from wfe_containerd.pull import PullProgress

from tests.harness import RegistryServer, TestImages

pytestmark = pytest.mark.daemon


@pytest.fixture
async def client(address: str, namespace: str) -> AsyncIterator[Client]:
    """A connected client in the session's namespace."""
    async with Client(address, namespace=namespace) as connected:
        yield connected


async def test_version_handshake(address: str, namespace: str) -> None:
    async with Client(address, namespace=namespace) as client:
        assert client.server_version is not None
        assert client.server_version.version
    async with Client(f"unix://{address}", namespace=namespace) as client:
        assert (await client.version()).version


async def test_address_from_environment(
    address: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WFE_CONTAINERD_ADDR", raising=False)
    monkeypatch.setenv("CONTAINERD_ADDRESS", "/nonexistent/containerd.sock")
    monkeypatch.setenv("WFE_CONTAINERD_ADDR", address)
    async with Client(namespace=namespace) as client:
        assert client.address == address


async def test_connect_errors_name_the_address(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match=r"nope\.sock"):
        async with Client(str(tmp_path / "nope.sock")):
            pass
    with pytest.raises(ConnectError, match="tcp://HOST:PORT"):
        Client("tcp://no-port")
    # A socket path that exists but nobody listens on.
    dead = tmp_path / "dead.sock"
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))
    sock.close()
    client = Client(str(dead))
    start = time.monotonic()
    with pytest.raises(ConnectError, match=r"dead\.sock"):
        await client.connect()
    await client.close()
    assert time.monotonic() - start < 15


async def test_pull_anonymous_with_progress_and_if_not_present(
    client: Client, test_images: TestImages
) -> None:
    events: list[PullProgress] = []
    image = await client.pull(test_images.ref("rich"), progress=events.append)
    assert image.name == test_images.ref("rich")
    assert len(image.layers) == 3
    assert image.config.user == "app"
    assert {e.digest for e in events} >= {layer.digest for layer in image.layers}
    assert all(e.current <= e.total for e in events)
    again = await client.get_image(test_images.ref("rich"))
    assert again is not None and again.chain_id == image.chain_id
    cached = await client.ensure_image(test_images.ref("rich"), policy="never")
    assert cached.chain_id == image.chain_id


async def test_pull_by_digest_and_multiarch_platform(
    client: Client, test_images: TestImages
) -> None:
    pinned = await client.pull(test_images.pinned("busybox"))
    assert pinned.target.digest == test_images.digest("busybox")
    arm = await client.pull(test_images.ref("multiarch"), platform=Platform("linux", "arm64"))
    amd = await client.pull(test_images.ref("multiarch"), platform=Platform("linux", "amd64"))
    assert arm.target.digest == amd.target.digest == test_images.digest("multiarch")
    assert arm.manifest.digest != amd.manifest.digest
    assert arm.config.platform == Platform("linux", "arm64")


async def test_concurrent_pulls_of_one_image(
    address: str, namespace: str, test_images: TestImages
) -> None:
    ns = f"{namespace}-conc"
    async with Client(address, namespace=ns) as client:
        images = await asyncio.gather(*[client.pull(test_images.ref("rich")) for _ in range(4)])
        assert len({i.chain_id for i in images}) == 1
        result = await client.run(images[0], RunOptions(args=["true"]))
        assert result.exit_code == 0


async def test_pull_auth_from_docker_config_and_helper(
    client: Client,
    test_images: TestImages,
    auth_registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = test_images.ref("busybox", auth=True)
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    with pytest.raises(AuthError, match="anonymously") as info:
        await client.pull(ref)
    assert auth_registry.password not in str(info.value)
    token = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    (config_dir / "config.json").write_text(
        json.dumps({"auths": {auth_registry.host: {"auth": token}}})
    )
    await client.pull(ref)
    # A credential helper named in credHelpers.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-wfetest"
    helper.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import json, sys
        assert sys.argv[1] == "get" and sys.stdin.read().strip() == {auth_registry.host!r}
        print(json.dumps({{"Username": {auth_registry.username!r},
                          "Secret": {auth_registry.password!r}}}))
        """)
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (config_dir / "config.json").write_text(
        json.dumps({"credHelpers": {auth_registry.host: "wfetest"}})
    )
    await client.pull(ref)
    wrong = {auth_registry.host: Credentials(auth_registry.username, "wrong-password")}
    with pytest.raises(AuthError) as info:
        await client.pull(ref, credentials=wrong)
    assert "wrong-password" not in str(info.value)


async def test_missing_image_and_never_policy(client: Client, registry: RegistryServer) -> None:
    ref = f"{registry.host}/wfe/does-not-exist:v1"
    with pytest.raises(ImageNotFoundError, match="does-not-exist"):
        await client.pull(ref)
    with pytest.raises(ImageNotFoundError, match="never"):
        await client.ensure_image(ref, policy="never")


async def test_run_image_defaults_and_large_output(client: Client, test_images: TestImages) -> None:
    chunks: list[str] = []
    image = await client.ensure_image(test_images.ref("rich"))
    result = await client.run(image, RunOptions(), on_output=lambda s, t: chunks.append(t))
    assert result.exit_code == 0
    assert "".join(chunks) == "rich default cmd\n"  # Entrypoint + Cmd, as the image says
    chunks.clear()
    # 2 MiB through the FIFO: more than a pipe holds, so reading must keep up.
    result = await client.run(
        image,
        RunOptions(args=["/bin/sh", "-c", "head -c 2097152 /dev/zero | tr '\\0' x"]),
        on_output=lambda s, t: chunks.append(t),
    )
    assert result.exit_code == 0
    assert sum(len(c) for c in chunks) == 2097152


async def test_gc_removes_leftovers_of_a_dead_process(
    address: str, namespace: str, test_images: TestImages
) -> None:
    """A child process creates a container and is SIGKILLed; gc then removes what it left."""
    ns = f"{namespace}-gc"
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from wfe_containerd.client import Client, RunOptions
        async def main():
            async with Client({address!r}, namespace={ns!r}) as client:
                image = await client.ensure_image({test_images.ref("busybox")!r})
                container = await client.new_container("gc-victim-1", image,
                                                       RunOptions(args=["sleep", "1000"]))
                task = await container.new_task()
                await task.start()
                print("ready", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert "ready" in proc.stdout, proc.stderr
    removed = await gc.collect_garbage_async(address, ns)
    assert "task gc-victim-1" in removed
    assert "container gc-victim-1" in removed
    assert any(r.startswith("lease ") for r in removed)
    assert await gc.collect_garbage_async(address, ns) == []
    # A live process's objects are never touched.
    async with Client(address, namespace=ns) as client:
        image = await client.ensure_image(test_images.ref("busybox"))
        container = await client.new_container(
            new_container_id("live"), image, RunOptions(args=["true"])
        )
        try:
            assert await gc.collect_garbage_async(address, ns) == []
        finally:
            await container.delete()


async def test_pull_resumes_a_partial_ingest(
    address: str, namespace: str, test_images: TestImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half a layer left in the content store's ingest is continued with an HTTP Range."""
    from wfe_containerd._pb.services import content_pb2, images_pb2
    from wfe_containerd.pull import parse_reference
    from wfe_containerd.registry import RegistryClient

    ns = f"{namespace}-resume"
    ref = parse_reference(test_images.ref("large"))
    registry = RegistryClient(ref.domain)
    top = registry.resolve(ref.path, ref.object)
    from wfe_containerd.oci import parse_manifest

    _, layers = parse_manifest(registry.fetch_manifest(ref.path, top), "manifest")
    layer = max(layers, key=lambda d: d.size)
    stream = registry.open_blob(ref.path, layer)
    half = stream.read(layer.size // 2)
    stream.close()
    async with Client(address, namespace=ns) as client:
        conn = client.conn
        # The blob may be committed already from another test; this one wants it cold.
        for image in (await conn.call(conn.images.List, images_pb2.ListImagesRequest())).images:
            await conn.call(
                conn.images.Delete, images_pb2.DeleteImageRequest(name=image.name, sync=True)
            )
        if await _blob_exists(conn, layer.digest):
            pytest.skip("the large layer is committed in another namespace; cannot make it cold")
        call = conn.content.Write(metadata=conn.metadata())
        await call.write(
            content_pb2.WriteContentRequest(
                action=content_pb2.STAT,
                ref=f"layer-{layer.digest}",
                total=layer.size,
                expected=layer.digest,
            )
        )
        await call.read()
        await call.write(
            content_pb2.WriteContentRequest(
                action=content_pb2.WRITE, offset=0, data=half[: 4 * 1024 * 1024]
            )
        )
        await call.read()
        await call.done_writing()
        call.cancel()
        offsets: list[int] = []
        original = RegistryClient.open_blob

        def spy(self: RegistryClient, repo: str, desc: object, offset: int = 0) -> object:
            if getattr(desc, "digest", None) == layer.digest:
                offsets.append(offset)
            return original(self, repo, desc, offset)  # type: ignore[arg-type]

        monkeypatch.setattr(RegistryClient, "open_blob", spy)
        image = await client.pull(test_images.ref("large"))
        assert offsets and offsets[0] == 4 * 1024 * 1024
        result = await client.run(image, RunOptions(args=["true"]))
        assert result.exit_code == 0
        await conn.call(
            conn.images.Delete, images_pb2.DeleteImageRequest(name=image.name, sync=True)
        )


async def _blob_exists(conn: object, digest: str) -> bool:
    from wfe_containerd.content import exists

    return await exists(conn, digest)  # type: ignore[arg-type]


def _cgroup_file(namespace: str, container_id: str, v1: str, v2: str) -> Path:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        return Path(f"/sys/fs/cgroup/{namespace}/{container_id}/{v2}")
    controller, name = v1.split("/", 1)
    return Path(f"/sys/fs/cgroup/{controller}/{namespace}/{container_id}/{name}")


async def test_memory_and_cpu_limits_reach_the_cgroup(
    client: Client, test_images: TestImages
) -> None:
    image = await client.ensure_image(test_images.ref("busybox"))
    cid = new_container_id("limits")
    container = await client.new_container(
        cid,
        image,
        RunOptions(
            args=["sleep", "30"], memory_bytes=64 * 1024 * 1024, cpus=0.5, hostname="limited"
        ),
    )
    try:
        task = await container.new_task()
        try:
            await task.start()
            memory = _cgroup_file(
                client.namespace, cid, "memory/memory.limit_in_bytes", "memory.max"
            )
            cpu = _cgroup_file(client.namespace, cid, "cpu/cpu.cfs_quota_us", "cpu.max")
            assert memory.read_text().strip() == str(64 * 1024 * 1024)
            assert cpu.read_text().split()[0] == "50000"
        finally:
            await task.kill(9)
            await task.wait()
            await task.delete()
    finally:
        await container.delete()


async def test_pulled_image_survives_garbage_collection(
    address: str, namespace: str, test_images: TestImages
) -> None:
    """The GC labels hold the image together: after a synchronous GC it is still complete."""
    from wfe_containerd._pb.services import content_pb2
    from wfe_containerd.leases import create_lease, delete_lease

    ns = f"{namespace}-gc-labels"
    async with Client(address, namespace=ns) as client:
        image = await client.pull(test_images.ref("rich"))
        conn = client.conn

        async def labels(digest: str) -> dict[str, str]:
            info = await conn.call(conn.content.Info, content_pb2.InfoRequest(digest=digest))
            return dict(info.info.labels)

        manifest = await labels(image.manifest.digest)
        assert manifest["containerd.io/gc.ref.content.config"] == image.config_digest
        assert manifest["containerd.io/gc.ref.content.l.2"] == image.layers[2].digest
        config = await labels(image.config_digest)
        assert config["containerd.io/gc.ref.snapshot.overlayfs"] == image.chain_id
        layer = await labels(image.layers[0].digest)
        assert layer["containerd.io/uncompressed"] == image.config.diff_ids[0]
        assert any(k.startswith("containerd.io/distribution.source.") for k in layer)
        # Deleting a lease with sync=True runs the garbage collector before returning.
        lease = await create_lease(conn, "wfe-test-gc")
        await delete_lease(conn, lease, sync=True)
        assert await client.get_image(test_images.ref("rich")) is not None
        result = await client.run(image, RunOptions(args=["true"]))
        assert result.exit_code == 0
