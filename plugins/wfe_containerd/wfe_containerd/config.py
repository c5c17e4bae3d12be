"""The ``containerd`` step's configuration and its validators.

Field names follow the reference engine's containerd step (``image``, ``run``, ``command``,
``env``, ``volumes``, ``working_dir``, ``user``, ``network``, ``memory``, ``cpu``, ``pull``,
``containerd_addr``, ``tls``, ``registry_auth``, ``timeout``) plus ``namespace``,
``snapshotter``, ``read_only_rootfs``, ``insecure_registries``, ``hostname``, ``grace_period``
and ``platform``. Unlike the reference engine, every one of them takes effect at run time.
Values may hold ``${{ ... }}`` at validation time; validators skip what they cannot judge yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import attrs

from wfe_core.contracts import Diagnostic, ValidationContext, has_reference

NETWORK_MODES = ("none", "host")
PULL_POLICIES = ("always", "if-not-present", "never")

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")


@attrs.frozen
class Volume:
    """A host path bind-mounted into the container (``readonly`` mounts it read-only)."""

    source: str
    target: str
    readonly: bool = False


@attrs.frozen
class TLS:
    """TLS files for a ``tcp://`` containerd address."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@attrs.frozen
class RegistryAuth:
    """Credentials for one registry host. The password never appears in a repr or a log.

    The host is the ``registry_auth`` key, or ``registry`` when set: mapping keys are not
    interpolated, so ``registry: "${{ inputs.registry }}"`` is how a templated host is given.
    """

    username: str
    password: str = attrs.field(repr=False)
    registry: str | None = None


@attrs.frozen
class ContainerdConfig:
    """Configuration of a ``type: containerd`` step. See docs/containerd.md."""

    image: str
    run: str | None = None
    command: list[str] | None = None
    env: dict[str, str] = attrs.field(factory=dict)
    volumes: list[Volume] = attrs.field(factory=list)
    working_dir: str | None = None
    user: str | None = None
    network: str = "none"
    memory: str | None = None
    cpu: str | None = None
    pull: str = "if-not-present"
    containerd_addr: str | None = None
    tls: TLS | None = None
    registry_auth: dict[str, RegistryAuth] = attrs.field(factory=dict)
    timeout: str | None = None
    namespace: str = "wfe"
    snapshotter: str = "overlayfs"
    read_only_rootfs: bool = False
    insecure_registries: list[str] = attrs.field(factory=list)
    hostname: str | None = None
    grace_period: str = "10s"
    platform: str | None = None


def parse_memory(text: str) -> int:
    """``512m``, ``1g``, ``256Mi``, ``1048576`` → bytes (binary units)."""
    match = _MEMORY.match(str(text))
    if not match:
        raise ValueError(
            f"invalid memory size {text!r}: use a number of bytes or a size like 512m, 1g, 256Mi"
        )
    number, unit = match.groups()
    key = (unit or "").lower().rstrip("b").rstrip("i") if unit and unit.lower() != "b" else ""
    value = int(float(number) * _MEMORY_UNITS[key])
    if value < 4 * 1024 * 1024:
        raise ValueError(f"memory limit {text!r} is too small: the minimum is 4m")
    return value


def parse_cpu(text: str) -> float:
    """``0.5``, ``2``, ``500m`` (millicores) → CPUs."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 1000 if raw.endswith("m") else float(raw)
    except ValueError:
        raise ValueError(
            f"invalid cpu limit {text!r}: use a number of CPUs (0.5, 2) or millicores (500m)"
        ) from None
    if value <= 0 or value > 1024:
        raise ValueError(f"invalid cpu limit {text!r}: it must be above 0")
    return value


def parse_duration(text: str | float | int) -> float:
    """``500ms``, ``30s``, ``10m``, ``2h``, or a bare number of seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"invalid duration {text!r}: use 500ms, 30s, 10m, 2h or seconds")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def validate(config: ContainerdConfig, ctx: ValidationContext) -> Iterable[Diagnostic]:
    """All checks on a containerd step's config; yields every problem found."""
    if not config.image.strip():
        yield ctx.error("CTRD001", "image must not be empty", "image")
    elif not has_reference(config.image):
        from wfe_containerd.reference import ReferenceError, parse_reference

        try:
            parse_reference(config.image)
        except ReferenceError as exc:
            yield ctx.error("CTRD001", str(exc), "image")
    if (config.run is None) == (config.command is None):
        yield ctx.error(
            "CTRD002",
            "set exactly one of 'run' (a shell script, run with /bin/sh -c) and "
            "'command' (an argument list)",
            "run" if config.run is not None else "image",
        )
    if config.command is not None and not config.command:
        yield ctx.error("CTRD002", "command must not be an empty list", "command")
    yield from _enum(ctx, config.network, NETWORK_MODES, "network", "CTRD003")
    yield from _enum(ctx, config.pull, PULL_POLICIES, "pull", "CTRD004")
    for field, parser, code in (
        ("memory", parse_memory, "CTRD005"),
        ("cpu", parse_cpu, "CTRD006"),
        ("timeout", parse_duration, "CTRD007"),
        ("grace_period", parse_duration, "CTRD007"),
    ):
        value = getattr(config, field)
        if value is not None and not has_reference(value):
            try:
                parser(value)
            except ValueError as exc:
                yield ctx.error(code, str(exc), field)
    for index, volume in enumerate(config.volumes):
        if not has_reference(volume.source):
            source = volume.source
            path = ctx.base_dir / source if not source.startswith(("/", "~")) else None
            resolved = path if path is not None else Path(source).expanduser()
            if not resolved.exists():
                yield ctx.error(
                    "CTRD008",
                    f"volume source {str(resolved)!r} does not exist",
                    "volumes",
                    index,
                    "source",
                    hint="relative paths resolve against the workflow file's folder",
                )
        if not has_reference(volume.target) and not volume.target.startswith("/"):
            yield ctx.error(
                "CTRD009",
                f"volume target {volume.target!r} must be an absolute path inside the container",
                "volumes",
                index,
                "target",
            )
    if (
        config.working_dir
        and not has_reference(config.working_dir)
        and not config.working_dir.startswith("/")
    ):
        yield ctx.error("CTRD009", "working_dir must be an absolute path", "working_dir")
    if not has_reference(config.namespace) and not _IDENTIFIER.match(config.namespace):
        yield ctx.error(
            "CTRD010",
            f"invalid namespace {config.namespace!r}: use letters and digits joined by . _ or -",
            "namespace",
        )
    if config.containerd_addr and not has_reference(config.containerd_addr):
        addr = config.containerd_addr
        if not (addr.startswith(("/", "unix:///")) or re.match(r"^tcp://[^/]+:\d+/?$", addr)):
            yield ctx.error(
                "CTRD011",
                f"invalid containerd_addr {addr!r}: use a socket path, "
                "unix:///PATH or tcp://HOST:PORT",
                "containerd_addr",
            )
        if config.tls is not None and not addr.startswith("tcp://"):
            yield ctx.warning("CTRD011", "tls is only used with a tcp:// containerd_addr", "tls")
    if config.platform and not has_reference(config.platform):
        from wfe_containerd.oci import parse_platform

        try:
            parse_platform(config.platform)
        except ValueError as exc:
            yield ctx.error("CTRD012", str(exc), "platform")


def _enum(
    ctx: ValidationContext, value: str, allowed: tuple[str, ...], field: str, code: str
) -> Iterable[Diagnostic]:
    if not has_reference(value) and value not in allowed:
        yield ctx.error(
            code, f"invalid {field} {value!r}: expected one of {', '.join(allowed)}", field
        )
