"""TLS material checks and handshake-failure translation, against a real TLS relay.

The relay (tls_relay.py) terminates mutual TLS with certificates made by openssl in the test
and forwards to an in-process grpc.aio health server on a unix socket.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from wfe_buildkit.address import TLSConfig
from wfe_buildkit.errors import DaemonConnectionError
from wfe_buildkit.tls_config import (
    TLSConfigError,
    channel_credentials,
    channel_options,
    explain_tls_failure,
    load_tls,
)

from tests.buildkit_extras.certs import PKI, make_pki
from tests.buildkit_extras.tls_relay import TLSRelay

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl missing")


@pytest.fixture(scope="module")
def pki() -> Iterator[PKI]:
    directory = Path(tempfile.mkdtemp(prefix="wfe-pki-"))
    yield make_pki(directory)
    shutil.rmtree(directory, ignore_errors=True)


def mtls(pki: PKI, **changes: str | None) -> TLSConfig:
    values: dict[str, str | None] = {
        "ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key),
    }
    values.update(changes)
    return TLSConfig(**values)


def test_load_tls_ok_and_key_hidden(pki: PKI) -> None:
    material = load_tls(mtls(pki, server_name="localhost"))
    assert material.ca == pki.ca.read_bytes()
    assert "PRIVATE KEY" not in repr(material)
    assert channel_options(material) == [("grpc.ssl_target_name_override", "localhost")]
    assert channel_options(load_tls(TLSConfig(ca=str(pki.ca)))) == []


def test_load_tls_errors(pki: PKI, tmp_path: Path) -> None:
    cases: list[tuple[TLSConfig, str]] = [
        (mtls(pki, ca=str(tmp_path / "nope.pem")), f"tls.ca: file {tmp_path / 'nope.pem'} does"),
        (mtls(pki, ca=str(tmp_path)), "is a directory"),
        (mtls(pki, key=None), "tls.cert is set but tls.key is not"),
        (mtls(pki, cert=None), "tls.key is set but tls.cert is not"),
        (mtls(pki, ca=str(pki.client_key)), "tls.ca: " + str(pki.client_key) + " holds PRIVATE"),
        (mtls(pki, key=str(pki.other_client_key)), "is not the private key of the certificate"),
    ]
    der = tmp_path / "ca.der"
    der.write_bytes(b"\x30\x82\x01\x00garbage")
    cases.append((mtls(pki, ca=str(der)), "is not a PEM file"))
    for config, fragment in cases:
        with pytest.raises(TLSConfigError) as info:
            load_tls(config)
        assert fragment in str(info.value), (config, str(info.value))
        key_body = pki.client_key.read_text().splitlines()[1]
        assert key_body not in str(info.value)


@contextlib.asynccontextmanager
async def relay_to_health(pki: PKI, *, client_ca: bool = True) -> AsyncIterator[TLSRelay]:
    with tempfile.TemporaryDirectory(prefix="wfe-tls-") as directory:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        sock = Path(directory) / "s.sock"
        server.add_insecure_port(f"unix:{sock}")
        await server.start()
        try:
            async with TLSRelay(
                sock, pki.server_cert, pki.server_key, client_ca=pki.ca if client_ca else None
            ) as relay:
                yield relay
        finally:
            await server.stop(grace=None)


async def check(relay: TLSRelay, config: TLSConfig | None) -> DaemonConnectionError | None:
    """One health check over TLS (or plaintext); the translated error or None on success."""
    target = f"127.0.0.1:{relay.port}"
    if config is None:
        channel = grpc.aio.insecure_channel(target)
    else:
        material = load_tls(config)
        channel = grpc.aio.secure_channel(
            target, channel_credentials(material), options=channel_options(material)
        )
    try:
        await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        return None
    except grpc.aio.AioRpcError as error:
        return explain_tls_failure(relay.address, config, error.details() or "")
    finally:
        await channel.close()


async def test_handshakes_through_relay(pki: PKI) -> None:
    async with relay_to_health(pki) as relay:
        assert await check(relay, mtls(pki)) is None

        error = await check(relay, mtls(pki, ca=str(pki.other_ca)))
        assert error is not None
        assert "not signed by the configured CA" in str(error)
        assert "set tls.ca" in str(error)

        error = await check(relay, mtls(pki, cert=None, key=None))
        assert error is not None
        assert "requires a client certificate" in str(error)

        error = await check(
            relay, mtls(pki, cert=str(pki.other_client_cert), key=str(pki.other_client_key))
        )
        assert error is not None
        assert "rejected the client certificate" in str(error)

        error = await check(relay, mtls(pki, server_name="wrong.example"))
        assert error is not None
        assert "does not name the host" in str(error) and "tls.server_name" in str(error)

        error = await check(relay, None)  # plaintext client, TLS daemon
        assert error is not None
        assert "set tls.ca, tls.cert" in str(error)
        assert error.address == relay.address


async def test_tls_client_against_plaintext_server(pki: PKI) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        material = load_tls(TLSConfig(ca=str(pki.ca)))
        channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", channel_credentials(material))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        await channel.close()
    finally:
        await server.stop(grace=None)
    error = explain_tls_failure(f"tcp://127.0.0.1:{port}", None, info.value.details() or "")
    assert "does not speak TLS" in str(error)


def test_encrypted_key_is_reported_not_prompted(pki: PKI, tmp_path: Path) -> None:
    import subprocess

    encrypted = tmp_path / "enc-key.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.client_key), "-aes256", "-passout", "pass:secret",
         "-out", str(encrypted)],
        check=True, capture_output=True,
    )
    with pytest.raises(TLSConfigError, match="is encrypted; gRPC needs an unencrypted key"):
        load_tls(mtls(pki, key=str(encrypted)))


def test_explain_go_tls13_client_cert_rejection(pki: PKI) -> None:
    """buildkitd (Go, TLS 1.3) rejects client certs after the client's handshake finished."""
    details = (
        "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: "
        "Unwrap failed (TSI_DATA_CORRUPTED)"
    )
    missing = explain_tls_failure("tcp://h:1", TLSConfig(ca=str(pki.ca)), details)
    assert "requires a client certificate" in str(missing)
    foreign = explain_tls_failure("tcp://h:1", mtls(pki), details)
    assert "rejected the client certificate" in str(foreign)


def test_explain_is_idempotent(pki: PKI) -> None:
    first = explain_tls_failure("tcp://h:1", TLSConfig(ca=str(pki.ca)), "CERTIFICATE_VERIFY_FAILED")
    again = explain_tls_failure("tcp://h:1", TLSConfig(ca=str(pki.ca)), first.reason)
    assert again.reason == first.reason
