"""What the fixtures hand to tests: addresses and paths of the harness daemons.

Plain frozen dataclasses so other helpers can type against them (``from tests.harness import
ContainerdDaemon``) without importing any daemon logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ContainerdDaemon:
    """The harness containerd: ``address`` is the unix socket path (no ``unix://`` prefix)."""

    address: str
    root: str
    state: str
    log_path: str
    pid: int | None = None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> ContainerdDaemon:
        return cls(info["address"], info["root"], info["state"], info["log_path"], info.get("pid"))


@dataclass(frozen=True)
class DockerDaemon:
    """The harness Docker Engine: ``host`` is ``unix:///…/docker.sock``, ``socket`` the path."""

    host: str
    socket: str
    log_path: str
    pid: int | None = None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> DockerDaemon:
        return cls(info["host"], info["socket"], info["log_path"], info.get("pid"))


@dataclass(frozen=True)
class RegistryServer:
    """A harness registry: ``host`` is ``127.0.0.1:PORT`` (plain HTTP).

    ``username``/``password`` are set for the authenticated registry and empty otherwise.
    """

    host: str
    log_path: str
    username: str = ""
    password: str = ""
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> RegistryServer:
        return cls(
            info["host"],
            info["log_path"],
            info.get("username", ""),
            info.get("password", ""),
            info.get("pid"),
        )
