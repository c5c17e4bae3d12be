"""``tcp://`` with mutual TLS: a private containerd with a TLS TCP listener on loopback.

The harness containerd listens on a unix socket only, so this module starts its own small
daemon (own root, state and sockets in a temp dir, stopped by pid) with certificates made by
``openssl`` for the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wfe_containerd.client import Client
from wfe_containerd.connection import TLSConfig
from wfe_containerd.errors import ConnectError

from tests.harness import require

pytestmark = pytest.mark.daemon


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    require("containerd", "openssl")
    base = tmp_path_factory.mktemp("ctrd-tls")
    certs = base / "certs"
    certs.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=wfe-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=certs,
    )
    ext = certs / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=certs,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            f"{name}.pem",
            cwd=certs,
        )
    port = _free_port()
    config = base / "config.toml"
    config.write_text(f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{base}/c.sock"
  tcp_address = "127.0.0.1:{port}"
  tcp_tls_ca = "{certs}/ca.pem"
  tcp_tls_cert = "{certs}/server.pem"
  tcp_tls_key = "{certs}/server.key"
[ttrpc]
  address = "{base}/c.sock.ttrpc"
[debug]
  address = "{base}/debug.sock"
[metrics]
  address = ""
""")
    log = (base / "containerd.log").open("wb")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"tcp://127.0.0.1:{port}", certs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


async def test_tcp_with_mutual_tls(tls_daemon: tuple[str, Path]) -> None:
    """containerd's TCP listener serves only TCP-enabled services (CRI streaming), so a version
    call over it gets "unknown service" back. That answer proves the mutual-TLS handshake
    worked; a client without a certificate never gets that far."""
    address, certs = tls_daemon
    tls = TLSConfig(
        ca=str(certs / "ca.pem"), cert=str(certs / "client.pem"), key=str(certs / "client.key")
    )
    client = Client(address, namespace="wfe-tls", tls=tls)
    with pytest.raises(ConnectError, match="unknown service") as info:
        await client.connect()
    assert address in str(info.value)
    await client.close()
    client = Client(address, namespace="wfe-tls", tls=TLSConfig(ca=str(certs / "ca.pem")))
    with pytest.raises(ConnectError) as info:
        await client.connect()
    assert address in str(info.value) and "unknown service" not in str(info.value)
    await client.close()
    with pytest.raises(ConnectError, match="TLS"):
        Client(address, tls=TLSConfig(ca=str(certs / "missing.pem")))
