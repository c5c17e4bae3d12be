"""Docker Engine 20.10 on a private socket; its embedded BuildKit is the BuildKit CI has.

Started with ``--iptables=false --bridge=none`` so it never touches the host's network, and with
its own data root, exec root, pidfile and config file. It talks to a containerd of its own
(:class:`~tests.harness.containerd.DockerContainerd`, started with it as the service
``docker_containerd``) rather than to the harness containerd, so the two cannot disturb each
other's namespaces or content, and never to a system containerd.
"""

from __future__ import annotations

import json
from typing import Any

from .containerd import DockerContainerd
from .http_probe import unix_get
from .service import Service


class Dockerd(Service):
    """The harness Docker Engine (the BuildKit executor's test target, via ``POST /grpc``)."""

    name = "docker"
    deadline_s = 30.0

    @property
    def socket(self) -> str:
        return str(self.dir / "docker.sock")

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def prepare(self) -> None:
        super().prepare()
        # deprecated-key-path: otherwise 20.10 writes a trust key to /etc/docker/key.json.
        # shutdown-timeout: teardown should not wait 15 s for containers a test left running.
        config = {"deprecated-key-path": str(self.dir / "key.json"), "shutdown-timeout": 2}
        (self.dir / "daemon.json").write_text(json.dumps(config) + "\n")

    @property
    def containerd_address(self) -> str:
        return DockerContainerd(self.base).address

    def argv(self) -> list[str]:
        return [
            "dockerd",
            "--containerd", self.containerd_address,
            "--data-root", str(self.dir / "data"),
            "--exec-root", str(self.dir / "exec"),
            "--pidfile", str(self.dir / "docker.pid"),
            "--config-file", str(self.dir / "daemon.json"),
            "-H", self.host,
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--log-level=info",
        ]  # fmt: skip

    def is_ready(self) -> bool:
        status, body = unix_get(self.socket, "/_ping", timeout=2)
        return status == 200 and body.strip() == b"OK"

    def info(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "socket": self.socket,
            "containerd_address": self.containerd_address,
            "log_path": str(self.log_path),
        }
