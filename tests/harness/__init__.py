"""Real daemons for wfe's tests, benchmarks and demo (issue 4).

containerd, Docker Engine (embedded BuildKit) and two OCI registries, each on private sockets,
directories and loopback ports under one temporary directory, plus test images built from
busybox-static. Used through the pytest fixtures in tests/conftest.py, or as a command:
``python -m tests.harness up|down|env``. See docs/testing.md.
"""

from __future__ import annotations

from .endpoints import ContainerdDaemon, DockerDaemon, RegistryServer
from .image_refs import TestImages
from .processes import is_harness_process, non_harness_children
from .requirements import HarnessUnavailable, in_ci, require
from .session import Harness

__all__ = [
    "ContainerdDaemon",
    "DockerDaemon",
    "Harness",
    "HarnessUnavailable",
    "RegistryServer",
    "TestImages",
    "in_ci",
    "is_harness_process",
    "non_harness_children",
    "require",
]
