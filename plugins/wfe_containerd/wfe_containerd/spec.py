"""The OCI runtime spec for a container: ctr's defaults, then the image, then the caller.

:func:`default_spec` reproduces what ``ctr run`` (containerd 1.6's ``oci.WithDefaultSpec``) gives
on Linux; :func:`build_spec` layers the image config and the caller's :class:`RunOptions` on top.
The result is a plain dict, serialised to JSON for ``Containers.Create``.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from wfe_containerd.oci import ImageConfig
from wfe_containerd.userdb import ResolvedUser

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CPU_PERIOD = 100_000

_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

_DEFAULT_MOUNTS: list[dict[str, Any]] = [
    {
        "destination": "/proc",
        "type": "proc",
        "source": "proc",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
]

_DEVICES = [(1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (136, None), (5, 2)]


def default_spec(namespace: str, container_id: str) -> dict[str, Any]:
    """What ``ctr run`` starts from on Linux (containerd 1.6), as a JSON-ready dict."""
    devices: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in _DEVICES:
        entry: dict[str, Any] = {"allow": True, "type": "c", "major": major, "access": "rwm"}
        if minor is not None:
            entry["minor"] = minor
        devices.append(entry)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": [],
            "env": [DEFAULT_PATH],
            "cwd": "/",
            "capabilities": {
                name: list(_CAPABILITIES) for name in ("bounding", "effective", "permitted")
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "mounts": copy.deepcopy(_DEFAULT_MOUNTS),
        "linux": {
            "resources": {"devices": devices},
            "cgroupsPath": f"/{namespace}/{container_id}",
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }


@attrs.frozen
class BindMount:
    """A host path bind-mounted into the container."""

    source: str
    destination: str
    readonly: bool = False


@attrs.frozen
class RunOptions:
    """What the caller sets on top of the image. ``args`` replaces everything when given;
    ``command`` replaces the image's Cmd but keeps its Entrypoint (as ``ctr run IMAGE ID ARGS``)."""

    args: Sequence[str] | None = None
    command: Sequence[str] | None = None
    env: Mapping[str, str] | Sequence[str] = ()
    working_dir: str | None = None
    user: str | None = None
    mounts: Sequence[BindMount] = ()
    network: str = "none"
    memory_bytes: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    hostname: str | None = None
    read_only_rootfs: bool = False


def swap_accounting() -> bool:
    """Whether the host's cgroups can limit swap (always on v2; on v1 only with memsw)."""
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers") or os.path.exists(
        "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
    )


def merge_env(base: Iterable[str], overrides: Mapping[str, str] | Iterable[str]) -> list[str]:
    """Apply ``overrides`` by key: replace in place, append new ones; a bare ``KEY`` deletes."""
    result = list(base)
    items = (
        [f"{k}={v}" for k, v in overrides.items()]
        if isinstance(overrides, Mapping)
        else list(overrides)
    )
    for item in items:
        key = item.split("=", 1)[0]
        index = next((i for i, e in enumerate(result) if e.split("=", 1)[0] == key), None)
        if "=" not in item:
            if index is not None:
                del result[index]
        elif index is None:
            result.append(item)
        else:
            result[index] = item
    return result


def process_args(config: ImageConfig, options: RunOptions) -> list[str]:
    if options.args is not None:
        return list(options.args)
    if options.command is not None:
        return [*config.entrypoint, *options.command]
    return [*config.entrypoint, *config.cmd]


def build_spec(
    *,
    namespace: str,
    container_id: str,
    image: ImageConfig,
    options: RunOptions,
    user: ResolvedUser,
) -> dict[str, Any]:
    """The full spec: defaults, then image config, then options (see the module docstring)."""
    spec = default_spec(namespace, container_id)
    process = spec["process"]
    process["args"] = process_args(image, options)
    if not process["args"]:
        raise ValueError(
            "nothing to run: the image has no Entrypoint or Cmd and no command was given"
        )
    process["env"] = merge_env(list(image.env) or [DEFAULT_PATH], options.env)
    process["cwd"] = options.working_dir or image.working_dir or "/"
    process["user"] = {"uid": user.uid, "gid": user.gid}
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    _apply_resources(spec["linux"]["resources"], options)
    _apply_network(spec, options, container_id)
    for mount in options.mounts:
        spec["mounts"].append(
            {
                "destination": mount.destination,
                "type": "bind",
                "source": mount.source,
                "options": ["rbind", "ro" if mount.readonly else "rw"],
            }
        )
    if options.read_only_rootfs:
        spec["root"]["readonly"] = True
    return spec


def _apply_resources(resources: dict[str, Any], options: RunOptions) -> None:
    """CPU shares as ctr sets them, then the caller's memory, CPU quota and pids limits."""
    resources["cpu"] = {"shares": 1024}
    if options.memory_bytes is not None:
        resources["memory"] = {"limit": options.memory_bytes}
        if swap_accounting():
            # limit+swap equal to the limit: no swap, so the limit means what it says.
            resources["memory"]["swap"] = options.memory_bytes
    if options.cpus is not None:
        resources["cpu"].update(quota=max(1000, int(options.cpus * CPU_PERIOD)), period=CPU_PERIOD)
    if options.pids_limit is not None:
        resources["pids"] = {"limit": options.pids_limit}


def _apply_network(spec: dict[str, Any], options: RunOptions, container_id: str) -> None:
    """``none`` keeps the fresh network namespace (hostname: the container id); ``host`` drops
    it and binds the host's /etc/hosts and /etc/resolv.conf (hostname: the host's)."""
    if options.network == "host":
        linux = spec["linux"]
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            spec["mounts"].append(
                {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]}
            )
        if options.hostname is None:
            process = spec["process"]
            process["env"] = merge_env(process["env"], {"HOSTNAME": socket.gethostname()})
    elif options.network != "none":
        raise ValueError(f"unknown network mode {options.network!r}: use none or host")
    if options.hostname is not None:
        spec["hostname"] = options.hostname
    elif options.network == "none":
        spec["hostname"] = container_id[:63]
