"""What the harness needs from the host, and how a missing piece is reported.

In CI (``CI=true``) a missing binary or a daemon that cannot start must fail the test run, never
hide behind a skip; on a developer machine the test is skipped with the apt packages to install.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

#: Binary (or capability) -> Debian package that provides it.
APT_PACKAGES: dict[str, str] = {
    "containerd": "containerd",
    "ctr": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "runc": "runc",
    "dockerd": "docker.io",
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "busybox": "busybox-static",
    "htpasswd": "apache2-utils",
    "ssh-agent": "openssh-client",
    "ssh-add": "openssh-client",
    "ssh-keygen": "openssh-client",
}

#: What each harness service needs on the host.
SERVICE_NEEDS: dict[str, tuple[str, ...]] = {
    "containerd": ("root", "containerd", "containerd-shim-runc-v2", "runc", "ctr"),
    "dockerd": ("root", "dockerd", "containerd", "runc"),
    "registry": ("docker-registry",),
    "auth_registry": ("docker-registry", "htpasswd"),
    "images": ("busybox", "skopeo"),
}

#: The full list, for messages and for .ci/run.
ALL_APT_PACKAGES = sorted(set(APT_PACKAGES.values()))


class HarnessUnavailable(RuntimeError):
    """A binary is missing or a daemon failed to start; turned into error (CI) or skip (local)."""


def in_ci() -> bool:
    """True when running in CI, where nothing may be skipped for lack of a daemon."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(*what: str) -> list[str]:
    """The subset of ``what`` (binaries, or ``root``) that this host lacks."""
    absent: list[str] = []
    for item in what:
        if item == "root":
            if os.geteuid() != 0:
                absent.append(item)
        elif shutil.which(item) is None:
            absent.append(item)
    return absent


def describe_missing(absent: list[str]) -> str:
    packages = sorted({APT_PACKAGES[a] for a in absent if a in APT_PACKAGES})
    parts = [f"missing: {', '.join(absent)}"]
    if packages:
        parts.append(f"install with: apt-get install -y {' '.join(packages)}")
    if "root" in absent:
        parts.append("the daemons need root (run the tests as root or in a root container)")
    return "; ".join(parts)


def unavailable(reason: str) -> NoReturn:
    """Fail (CI) or skip (local) the current test for ``reason``."""
    if in_ci():
        raise HarnessUnavailable(f"{reason} (CI=true: a missing daemon is an error)")
    pytest.skip(reason)


def require(*what: str) -> None:
    """Make sure binaries (or ``root``, or a service name from SERVICE_NEEDS) are present.

    ``require("containerd")`` checks everything the containerd service needs;
    ``require("skopeo", "htpasswd")`` checks those binaries. In CI a missing piece raises
    :class:`HarnessUnavailable` (a test error); locally the test is skipped with a message naming
    the apt packages to install.
    """
    needed: list[str] = []
    for item in what:
        for need in SERVICE_NEEDS.get(item, (item,)):
            if need not in needed:
                needed.append(need)
    absent = missing(*needed)
    if absent:
        unavailable(describe_missing(absent))
