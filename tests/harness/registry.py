"""OCI registries (Debian's ``docker-registry``, distribution 2.8) on free loopback ports.

Two flavours: open, and with htpasswd basic auth (bcrypt entries from ``htpasswd -Bbn``). Storage
lives under the harness directory; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
from typing import Any

from . import processes
from .http_probe import tcp_get
from .ports import free_port
from .service import Service

_PORT_ATTEMPTS = 5


class Registry(Service):
    """A registry on 127.0.0.1:<free port>; with ``auth=True`` it requires basic auth."""

    deadline_s = 15.0

    def __init__(self, base: Any, *, auth: bool = False) -> None:
        self.auth = auth
        self.name = "auth_registry" if auth else "registry"
        super().__init__(base)
        self.port = 0
        self.username = "wfe" if auth else ""
        self.password = secrets.token_hex(12) if auth else ""
        self._tie = True

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def prepare(self) -> None:
        super().prepare()
        self.port = free_port()
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",  # errors only: info logs every request, drowning failure reports
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.dir / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {self.host}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.auth:
            htpasswd = self.dir / "htpasswd"
            entry = subprocess.run(
                ["htpasswd", "-Bbn", self.username, self.password],
                capture_output=True,
                check=True,
                text=True,
            ).stdout.strip()
            htpasswd.write_text(entry + "\n")
            lines += ["auth:", "  htpasswd:", "    realm: wfe-test", f"    path: {htpasswd}"]
        (self.dir / "config.yml").write_text("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        return ["docker-registry", "serve", str(self.dir / "config.yml")]

    def spawn(self, *, tie_to_parent: bool) -> None:
        self._tie = tie_to_parent
        super().spawn(tie_to_parent=tie_to_parent)

    def wait_ready(self) -> float:
        """Wait for GET /v2/; if the port was taken in the meantime, retry on another one."""
        for attempt in range(_PORT_ATTEMPTS):
            try:
                return super().wait_ready()
            except RuntimeError:
                in_use = "address already in use" in processes.tail(self.log_path, 20)
                if not in_use or attempt == _PORT_ATTEMPTS - 1:
                    raise
                self.stop()
                main = threading.current_thread() is threading.main_thread()
                self.spawn(tie_to_parent=self._tie and main)
        raise AssertionError("unreachable")

    def is_ready(self) -> bool:
        status, _ = tcp_get(self.host, "/v2/", timeout=2)
        return status == (401 if self.auth else 200)

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pid": self.pid, "host": self.host, "log_path": str(self.log_path)}
        if self.auth:
            data.update(username=self.username, password=self.password)
        return data
