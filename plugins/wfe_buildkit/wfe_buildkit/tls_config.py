"""TLS material for ``tcp://`` BuildKit daemons, checked up front, and readable handshake errors.

grpcio takes PEM bytes and reports problems late and tersely: a missing client certificate,
a wrong CA or a key that does not belong to its certificate all surface as ``UNAVAILABLE`` with
texts like "Ssl handshake failed ... CERTIFICATE_VERIFY_FAILED" or "Socket closed" on the first
RPC. This module

* loads and checks the files named by :class:`wfe_buildkit.address.TLSConfig` before any
  connection (missing, unreadable, not PEM, a cert without its key, a key that does not match
  the certificate), each error naming the setting and the file — :func:`load_tls`;
* builds the channel credentials and options (``grpc.ssl_target_name_override`` for
  ``server_name``) — :func:`channel_credentials`, :func:`channel_options`;
* turns a failed RPC into a :class:`~wfe_buildkit.errors.DaemonConnectionError` that says which
  side rejected whom and what to check — :func:`explain_tls_failure`.

Private keys are never included in errors or reprs.
"""

from __future__ import annotations

import re
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from wfe_buildkit.address import TLSConfig
from wfe_buildkit.errors import DaemonConnectionError, InvalidRequest

if TYPE_CHECKING:
    import grpc


class TLSConfigError(InvalidRequest):
    """A TLS setting names a file that is missing, unreadable or not what it should be."""


def _size_repr(value: bytes | None) -> str:
    return f"<{len(value)} bytes>" if value else "None"


@attrs.frozen
class TLSMaterial:
    """The PEM bytes for one TLS connection, checked. ``key`` is hidden from reprs."""

    ca: bytes | None = attrs.field(default=None, repr=_size_repr)
    cert: bytes | None = attrs.field(default=None, repr=_size_repr)
    key: bytes | None = attrs.field(default=None, repr=False)
    server_name: str | None = None


_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def _read_pem(path_text: str | None, setting: str, expect: tuple[str, ...]) -> bytes | None:
    if not path_text:
        return None
    path = Path(path_text).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TLSConfigError(f"tls.{setting}: file {path} does not exist") from None
    except IsADirectoryError:
        raise TLSConfigError(f"tls.{setting}: {path} is a directory, not a PEM file") from None
    except PermissionError:
        raise TLSConfigError(
            f"tls.{setting}: file {path} is not readable by this user (permission denied)"
        ) from None
    except OSError as exc:
        raise TLSConfigError(f"tls.{setting}: cannot read {path}: {exc.strerror}") from None
    kinds = [m.group(1).decode() for m in _PEM_BEGIN.finditer(data)]
    if not kinds:
        raise TLSConfigError(
            f"tls.{setting}: {path} is not a PEM file (no '-----BEGIN ...-----' block; "
            "convert DER files with openssl x509 -inform der / openssl pkey -inform der)"
        )
    if not any(any(word in kind for word in expect) for kind in kinds):
        raise TLSConfigError(
            f"tls.{setting}: {path} holds {', '.join(sorted(set(kinds)))}, expected "
            f"{' or '.join(expect)}"
        )
    return data


def load_tls(tls: TLSConfig) -> TLSMaterial:
    """Read and check the files of ``tls``; raise :class:`TLSConfigError` naming the problem.

    Rules: ``cert`` and ``key`` come together (mutual TLS); the key must belong to the
    certificate; ``ca`` must hold at least one certificate. Without ``ca`` the system roots are
    used.
    """
    ca = _read_pem(tls.ca, "ca", ("CERTIFICATE",))
    cert = _read_pem(tls.cert, "cert", ("CERTIFICATE",))
    key = _read_pem(tls.key, "key", ("PRIVATE KEY",))
    if (cert is None) != (key is None):
        missing, given = ("key", "cert") if key is None else ("cert", "key")
        raise TLSConfigError(
            f"tls.{given} is set but tls.{missing} is not: a client certificate needs its "
            "private key (set both, or neither for server-only TLS)"
        )
    if ca is not None:
        try:
            ssl.create_default_context(cadata=ca.decode("ascii", errors="replace"))
        except ssl.SSLError as exc:
            raise TLSConfigError(
                f"tls.ca: {tls.ca} does not hold a usable CA certificate ({exc.reason or exc})"
            ) from None
    if cert is not None and key is not None:
        _check_pair(tls, cert, key)
    return TLSMaterial(ca=ca, cert=cert, key=key, server_name=tls.server_name or None)


class _EncryptedKey(Exception):
    """Raised by the password callback: the key is encrypted (grpcio cannot use it)."""


def _no_password() -> bytes:
    raise _EncryptedKey


def _check_pair(tls: TLSConfig, cert: bytes, key: bytes) -> None:
    """``load_cert_chain`` needs files; use a private temporary directory, removed at once.

    The password callback raises, so an encrypted key is reported instead of OpenSSL
    prompting on the terminal.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with tempfile.TemporaryDirectory(prefix="wfe-tls-") as directory:
        cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except _EncryptedKey:
            raise TLSConfigError(
                f"tls.key: {tls.key} is encrypted; gRPC needs an unencrypted key "
                "(openssl pkey -in KEY -out KEY.plain, then keep it mode 600)"
            ) from None
        except ssl.SSLError as exc:
            reason = exc.reason or "invalid certificate or key"
            raise TLSConfigError(
                f"tls.key: {tls.key} is not the private key of the certificate {tls.cert} "
                f"({reason})"
            ) from None


def channel_credentials(material: TLSMaterial) -> grpc.ChannelCredentials:
    """``grpc.ssl_channel_credentials`` from checked material."""
    import grpc

    return grpc.ssl_channel_credentials(
        root_certificates=material.ca,
        private_key=material.key,
        certificate_chain=material.cert,
    )


def channel_options(material: TLSMaterial) -> list[tuple[str, Any]]:
    """Extra channel options: the server name to verify, when it differs from the address."""
    if material.server_name:
        return [("grpc.ssl_target_name_override", material.server_name)]
    return []


# ---------------------------------------------------------------------------------------------
# Handshake failures

_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"certificate_verify_failed|certificate verify failed|unable to get local "
                   r"issuer|self.signed", re.I),
        "the daemon's certificate is not signed by the configured CA",
        "set tls.ca to the CA that signed the daemon's certificate",
    ),
    (
        re.compile(r"hostname verification|peer name|subject alt|name mismatch", re.I),
        "the daemon's certificate does not name the host connected to",
        "set tls.server_name to a name in the daemon certificate's subjectAltName",
    ),
    (
        re.compile(r"certificate required|alert.*(bad|unknown) certificate|alert number 116|"
                   r"peer did not return a certificate", re.I),
        "the daemon rejected the client certificate (missing or not signed by its CA)",
        "set tls.cert and tls.key to a client certificate signed by the daemon's --tlscacert",
    ),
    (
        re.compile(r"unknown ca|alert number 48", re.I),
        "the daemon does not trust the client certificate's issuer",
        "use a client certificate signed by the CA the daemon was started with (--tlscacert)",
    ),
    (
        re.compile(
            r"wrong[_ ]version[_ ]number|packet[_ ]length[_ ]too[_ ]long|http_request", re.I
        ),
        "the daemon does not speak TLS on this port",
        "remove the tls settings, or point the address at the daemon's TLS listener",
    ),
    (
        re.compile(r"alpn", re.I),
        "the TLS server did not negotiate HTTP/2 (ALPN h2)",
        "connect to buildkitd directly, or make the TLS proxy offer ALPN h2",
    ),
)


def explain_tls_failure(
    address: str, tls: TLSConfig | None, details: str
) -> DaemonConnectionError:
    """A connection error for a failed RPC on a ``tcp://`` channel, with a TLS diagnosis.

    ``details`` is the RPC error's details text. When the text matches no known handshake
    failure but TLS is configured, a closed socket during the handshake is the usual sign of a
    daemon that requires a client certificate, so the hint says so.
    """
    text = details or ""
    if text.startswith("TLS handshake failed"):  # already explained (idempotent)
        return DaemonConnectionError(address, text)
    # With TLS 1.3 (Go's buildkitd) a rejected client certificate arrives after the client
    # finished its handshake: grpcio then reports "Unwrap failed (TSI_DATA_CORRUPTED)" rather
    # than "Socket closed" (seen against buildkitd v0.24).
    for pattern, reason, hint in _RULES:
        if pattern.search(text):
            return DaemonConnectionError(address, f"TLS handshake failed: {reason}", hint)
    if tls is not None and re.search(
        r"handshake|socket closed|connection reset|broken pipe|end of file|eof|unwrap failed|"
        r"tsi_data_corrupted",
        text,
        re.I,
    ):
        if not tls.cert:
            reason = "the daemon closed the connection; it requires a client certificate"
            hint = "set tls.cert and tls.key to a client certificate signed by the daemon's CA"
        else:
            reason = "the daemon closed the connection; it rejected the client certificate"
            hint = (
                "use a client certificate signed by the CA the daemon was started with "
                "(--tlscacert)"
            )
        return DaemonConnectionError(
            address, f"TLS handshake failed: {reason} ({_short(text)})", hint
        )
    if tls is None and re.search(r"socket closed|connection reset|end of file", text, re.I):
        return DaemonConnectionError(
            address,
            _short(text),
            "if the daemon listens with TLS (--tlscacert/--tlscert), set tls.ca, tls.cert "
            "and tls.key",
        )
    return DaemonConnectionError(
        address, _short(text), "check host, port, firewall and TLS settings"
    )


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
