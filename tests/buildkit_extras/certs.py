"""A throwaway PKI made with the openssl CLI, for TLS tests.

Two independent CAs (the right one and a "wrong" one), a server certificate for 127.0.0.1 /
localhost and a client certificate, all signed by the first CA. Keys are EC P-256 (fast).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import attrs


@attrs.frozen
class PKI:
    """Paths of the generated PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key(name: str, cwd: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", name, cwd=cwd)


def _ca(name: str, cwd: Path) -> None:
    _key(f"{name}.key", cwd)
    _openssl("req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}",
             "-days", "2", "-out", f"{name}.pem", cwd=cwd)


def _leaf(name: str, ca: str, ext: str, cwd: Path) -> None:
    _key(f"{name}-key.pem", cwd)
    _openssl("req", "-new", "-key", f"{name}-key.pem", "-subj", f"/CN={name}",
             "-out", f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.pem", cwd=cwd)


def make_pki(directory: Path) -> PKI:
    """Generate everything into ``directory`` (takes well under a second)."""
    directory.mkdir(parents=True, exist_ok=True)
    _ca("ca", directory)
    _ca("other-ca", directory)
    _leaf("server", "ca",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n", directory)
    _leaf("client", "ca", "extendedKeyUsage=clientAuth\n", directory)
    _leaf("other-client", "other-ca", "extendedKeyUsage=clientAuth\n", directory)
    return PKI(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        other_ca=directory / "other-ca.pem",
        other_client_cert=directory / "other-client.pem",
        other_client_key=directory / "other-client-key.pem",
    )
