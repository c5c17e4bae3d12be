"""``tcp://`` + mutual TLS against the harness's BuildKit (Docker Engine), through relays.

TLSRelay (mTLS, certificates made here with openssl) -> the core client's ``UpgradeRelay``
(plaintext unix socket whose connections become ``POST /grpc`` upgrades) -> dockerd. The
client connects with ``tcp://127.0.0.1:PORT`` and ``TLSConfig``; the session runs over
``Control.Session`` inside the TLS connection.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from wfe_buildkit.address import TLSConfig
from wfe_buildkit.client import Client, DaemonConnectionError, Export
from wfe_buildkit.engine import DockerEngine
from wfe_buildkit.tls_config import explain_tls_failure
from wfe_buildkit.transport import UpgradeRelay

from tests.buildkit_extras.certs import PKI, make_pki
from tests.buildkit_extras.daemon import build
from tests.buildkit_extras.tls_relay import TLSRelay
from tests.harness import DockerDaemon, RegistryServer, TestImages

pytestmark = [
    pytest.mark.daemon,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing"),
]


@pytest.fixture(scope="module")
def pki() -> Iterator[PKI]:
    directory = Path(tempfile.mkdtemp(prefix="wfe-pki-"))
    yield make_pki(directory)
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def tls_endpoint(docker: DockerDaemon, pki: PKI) -> AsyncIterator[TLSRelay]:
    upgrade = UpgradeRelay(DockerEngine(docker.socket, docker.host))
    await upgrade.start()
    try:
        async with TLSRelay(upgrade.path, pki.server_cert, pki.server_key,
                            client_ca=pki.ca) as relay:
            yield relay
    finally:
        await upgrade.close()


def mtls(pki: PKI, **changes: str | None) -> TLSConfig:
    values: dict[str, str | None] = {
        "ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key),
    }
    values.update(changes)
    return TLSConfig(**values)


async def test_build_over_mutual_tls(
    docker_daemon: DockerDaemon, registry: RegistryServer, test_images: TestImages,
    pki: PKI, tmp_path: Path,
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("over tls\n")
    (ctx / "Dockerfile").write_text(
        f"FROM {test_images.ref('busybox')}\nCOPY hello.txt /hello.txt\nRUN cp /hello.txt /copy\n"
    )
    async with tls_endpoint(docker_daemon, pki) as relay:
        async with Client(relay.address, tls=mtls(pki)) as client:
            workers = await client.ping()
            assert workers
            await build(client, ctx, [Export.local(tmp_path / "out")], no_cache=True)
        assert relay.connections >= 1
    assert (tmp_path / "out" / "copy").read_text() == "over tls\n"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ca": "other"}, "not signed by the configured CA"),
        ({"cert": None, "key": None}, "requires a client certificate"),
        ({"cert": "other", "key": "other"}, "rejected the client certificate"),
    ],
)
async def test_tls_failures_are_explained(
    docker_daemon: DockerDaemon, pki: PKI, change: dict[str, str | None], expected: str,
) -> None:
    others = {"ca": str(pki.other_ca), "cert": str(pki.other_client_cert),
              "key": str(pki.other_client_key)}
    config = mtls(pki, **{k: (others[k] if v == "other" else v) for k, v in change.items()})
    async with tls_endpoint(docker_daemon, pki) as relay:
        client = Client(relay.address, tls=config, connect_timeout=5)
        try:
            with pytest.raises(DaemonConnectionError) as info:
                await client.ping()
        finally:
            await client.close()
    # The core client reports grpc's text; tls_config turns it into a diagnosis.
    explained = explain_tls_failure(relay.address, config, info.value.reason)
    assert expected in str(explained), (str(info.value), str(explained))
