"""Daemon addresses (no grpc import, so validators can use it cheaply).

``unix:///path`` (default ``unix:///run/buildkit/buildkitd.sock``, overridden by ``BUILDKIT_HOST``),
``tcp://host:port`` (optionally with TLS), ``docker://`` (the engine at ``DOCKER_HOST`` or
``/var/run/docker.sock``) and ``docker+unix:///path/docker.sock``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import attrs

from wfe_buildkit.errors import InvalidRequest

DEFAULT_ADDRESS = "unix:///run/buildkit/buildkitd.sock"
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"


@attrs.frozen
class TLSConfig:
    """Files for a ``tcp://`` connection with TLS; ``cert``/``key`` enable mutual TLS."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None


@attrs.frozen
class Address:
    """A parsed daemon address. ``kind`` is ``unix``, ``tcp`` or ``docker``."""

    raw: str
    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return self.raw


def default_address() -> str:
    """``BUILDKIT_HOST`` if set, else the standard buildkitd socket."""
    return os.environ.get("BUILDKIT_HOST") or DEFAULT_ADDRESS


def parse_address(raw: str | None) -> Address:
    """Parse an address string; raises :class:`InvalidRequest` with the accepted forms."""
    text = (raw or default_address()).strip()
    forms = "use unix:///path, tcp://host:port, docker:// or docker+unix:///path"
    if text.startswith("docker+unix://"):
        path = text[len("docker+unix://") :]
        if not path.startswith("/"):
            raise InvalidRequest(f"invalid BuildKit address {text!r}: the path must be absolute")
        return Address(text, "docker", path=path)
    if text == "docker://" or text == "docker":
        host = os.environ.get("DOCKER_HOST", "")
        if host.startswith("unix://"):
            return Address(text, "docker", path=host[len("unix://") :])
        if host:
            raise InvalidRequest(
                f"DOCKER_HOST={host!r} is not a unix socket; only unix sockets are supported "
                "for Docker's embedded BuildKit"
            )
        return Address(text, "docker", path=DEFAULT_DOCKER_SOCKET)
    if text.startswith("docker://"):
        rest = text[len("docker://") :]
        if rest.startswith("unix://"):
            return Address(text, "docker", path=rest[len("unix://") :])
        raise InvalidRequest(f"invalid BuildKit address {text!r}: {forms}")
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise InvalidRequest(f"invalid BuildKit address {text!r}: the path must be absolute")
        return Address(text, "unix", path=path)
    if text.startswith("tcp://"):
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise InvalidRequest(f"invalid BuildKit address {text!r}: expected tcp://HOST:PORT")
        return Address(text, "tcp", host=parts.hostname, port=port)
    raise InvalidRequest(f"unsupported BuildKit address {text!r}: {forms}")


__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_DOCKER_SOCKET",
    "Address",
    "TLSConfig",
    "default_address",
    "parse_address",
]
