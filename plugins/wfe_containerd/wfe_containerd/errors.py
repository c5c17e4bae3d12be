"""The error hierarchy of the containerd client.

Every error a user can cause or meet carries a message that says what failed, where (the daemon
address, the registry host, the image reference) and what to check. Callers branch on the class,
never on the text. gRPC status codes are mapped here, in one place, so that the rest of the
package never sees a raw ``grpc.RpcError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # grpc is imported only where calls are made: validation must not load it
    import grpc


class ContainerdError(Exception):
    """Base class of everything this package raises on purpose."""


class ConnectError(ContainerdError):
    """The daemon could not be reached (bad address, missing socket, refused, TLS failure)."""


class RPCError(ContainerdError):
    """A containerd call failed. ``code`` is the gRPC status code, ``method`` the call."""

    def __init__(
        self, message: str, *, code: grpc.StatusCode | None = None, method: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.method = method


class NotFoundError(RPCError):
    """The object asked for does not exist (gRPC NOT_FOUND)."""


class AlreadyExistsError(RPCError):
    """The object to create exists already (gRPC ALREADY_EXISTS)."""


class UnavailableError(RPCError):
    """The daemon or a resource in it is temporarily unavailable (gRPC UNAVAILABLE)."""


class RegistryError(ContainerdError):
    """A registry answered with an error, or could not be reached."""


class AuthError(RegistryError):
    """The registry refused our credentials, or asked for credentials we do not have."""


class ImageNotFoundError(ContainerdError):
    """The image is neither in the daemon's image store nor (if allowed) in the registry."""


class PullError(ContainerdError):
    """A pull failed for a reason other than the registry (bad manifest, digest mismatch...)."""


class RunError(ContainerdError):
    """Setting up or running a container failed."""


_CODE_CLASSES: dict[str, type[RPCError]] = {
    "NOT_FOUND": NotFoundError,
    "ALREADY_EXISTS": AlreadyExistsError,
    "UNAVAILABLE": UnavailableError,
}


def from_rpc_error(error: grpc.RpcError, *, address: str, method: str) -> ContainerdError:
    """Translate a gRPC error into our hierarchy, naming the daemon and the call.

    An UNAVAILABLE that means "cannot connect" (rather than "ingest locked") becomes a
    :class:`ConnectError` with a hint about the socket and permissions.
    """
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    name = code.name if code is not None else ""
    if name == "UNAVAILABLE" and _is_connect_failure(details):
        return ConnectError(
            f"cannot reach containerd at {address}: {details}. Check that the daemon is running, "
            "that the address is right (WFE_CONTAINERD_ADDR / CONTAINERD_ADDRESS or the step's "
            "containerd_addr) and that this user may open the socket"
        )
    cls = _CODE_CLASSES.get(name, RPCError)
    short = method.rsplit("/", 1)[-1] if method else "call"
    service = method.strip("/").split("/")[0].split(".")[-1] if method else ""
    where = f"{service}.{short}" if service else short
    return cls(f"containerd at {address}: {where} failed: {details}", code=code, method=method)


def _is_connect_failure(details: str) -> bool:
    text = details.lower()
    return any(
        marker in text
        for marker in (
            "failed to connect",
            "connection refused",
            "no such file",
            "permission denied",
            "connect failed",
            "unix:",
            "ssl",
            "handshake",
            "deadline",
        )
    )
