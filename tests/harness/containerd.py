"""containerd with its own root, state, socket and config, never the system's.

The CRI plugin and the snapshotters that need special filesystems are disabled: they slow the
start and are not used. ``/opt/containerd`` (the ``opt`` plugin's default) is redirected too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from .service import Service

DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
)


class Containerd(Service):
    """The harness containerd (the containerd executor's test target)."""

    name = "containerd"
    deadline_s = 20.0

    @property
    def address(self) -> str:
        return str(self.dir / "containerd.sock")

    @property
    def root(self) -> str:
        return str(self.dir / "root")

    @property
    def state(self) -> str:
        return str(self.dir / "state")

    @property
    def config_path(self) -> Path:
        return self.dir / "config.toml"

    def prepare(self) -> None:
        super().prepare()
        disabled = ", ".join(f'"{p}"' for p in DISABLED_PLUGINS)
        self.config_path.write_text(
            "version = 2\n"
            f'root = "{self.root}"\n'
            f'state = "{self.state}"\n'
            f"disabled_plugins = [{disabled}]\n"
            "[grpc]\n"
            f'  address = "{self.address}"\n'
            "[ttrpc]\n"
            f'  address = "{self.address}.ttrpc"\n'
            "[debug]\n"
            '  address = ""\n'
            '  level = "info"\n'
            "[metrics]\n"
            '  address = ""\n'
            '[plugins."io.containerd.internal.v1.opt"]\n'
            f'  path = "{self.dir / "opt"}"\n'
        )

    def argv(self) -> list[str]:
        return ["containerd", "--config", str(self.config_path)]

    def is_ready(self) -> bool:
        if not Path(self.address).exists():
            return False
        result = subprocess.run(
            ["ctr", "--address", self.address, "version"],
            capture_output=True,
            timeout=5,
            check=False,
        )
        return result.returncode == 0

    def info(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "address": self.address,
            "root": self.root,
            "state": self.state,
            "log_path": str(self.log_path),
        }


class DockerContainerd(Containerd):
    """A second, private containerd that the harness Docker Engine uses (``--containerd``).

    Without ``--containerd``, dockerd 20.10 uses ``/run/containerd/containerd.sock`` whenever
    that socket exists (a system containerd, common on developer machines) and only otherwise
    starts its own child, whose generated config also uses ``/opt/containerd``. Giving it a
    containerd of ours keeps Docker off the system's daemon in every case, and apart from the
    containerd that the containerd executor's tests use.
    """

    name = "docker_containerd"
