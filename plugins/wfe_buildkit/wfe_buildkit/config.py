"""The ``buildkit`` step's configuration and its validators.

``BuildkitConfig`` holds the reference engine's fields (``dockerfile``, ``context``, ``target``,
``tags``, ``build_args``, ``cache_from``, ``cache_to``, ``push``, ``output_type``,
``buildkit_addr``, ``tls``, ``registry_auth``, ``timeout``) plus ``output_dest``, ``platforms``,
``labels``, ``no_cache``, ``network``, ``secrets`` and ``ssh``. Relative paths resolve against
the workflow file's directory. Validators run before anything executes and accept
``${{ ... }}`` references wherever a value is only known at run time.

Diagnostic codes: BK001 push without tags, BK002 unknown output_type, BK003 output_dest missing,
BK004 TLS file missing / TLS without tcp, BK005 bad tag, BK006 bad network, BK007 bad address,
BK008 context/Dockerfile missing, BK009 bad timeout, BK010 bad secret/ssh entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import attrs

from wfe_core.contracts import Diagnostic, ValidationContext, has_reference

OUTPUT_TYPES = ("image", "moby", "local", "tar", "oci", "docker")
FILE_OUTPUTS = ("local", "tar", "oci", "docker")
NETWORKS = ("default", "none", "host")

# docker/distribution reference grammar (name components, optional host:port, tag, digest)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"(?::[\w][\w.-]{0,127})?"
_DIGEST = r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
_REFERENCE = re.compile(
    rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}$"
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


@attrs.frozen
class TLSSettings:
    """TLS for ``tcp://`` addresses: CA bundle, client certificate and key, server name."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None


@attrs.frozen
class RegistryAuth:
    """Credentials for one registry host. The password never appears in logs or reprs."""

    username: str = ""
    password: str = attrs.field(default="", repr=False)


@attrs.frozen
class SecretSource:
    """Where a build secret (``RUN --mount=type=secret,id=ID``) comes from: a file or env var."""

    file: str | None = None
    env: str | None = None


@attrs.frozen
class BuildkitConfig:
    """Configuration of a ``buildkit`` step (see docs/buildkit.md for every field)."""

    context: str = "."
    dockerfile: str | None = None
    target: str | None = None
    tags: list[str] = attrs.field(factory=list)
    build_args: dict[str, str] = attrs.field(factory=dict)
    labels: dict[str, str] = attrs.field(factory=dict)
    platforms: list[str] = attrs.field(factory=list)
    no_cache: bool = False
    network: str = "default"
    cache_from: list[str] = attrs.field(factory=list)
    cache_to: list[str] = attrs.field(factory=list)
    push: bool = False
    output_type: str = "image"
    output_dest: str | None = None
    buildkit_addr: str | None = None
    tls: TLSSettings | None = None
    registry_auth: dict[str, RegistryAuth] = attrs.field(factory=dict)
    secrets: dict[str, SecretSource] = attrs.field(factory=dict)
    ssh: list[str] = attrs.field(factory=list)
    timeout: str | None = None


def parse_duration(text: str) -> float:
    """``500ms``, ``30s``, ``10m``, ``2h`` or a bare number of seconds -> seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"invalid duration {text!r}; use e.g. 500ms, 30s, 10m, 2h or seconds")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[match.group(2)]


def valid_reference(tag: str) -> bool:
    """Whether ``tag`` is a valid image reference (``host:5000/name:tag``)."""
    return len(tag) <= 255 and bool(_REFERENCE.match(tag))


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_basics(config: BuildkitConfig, vc: ValidationContext) -> Iterator[Diagnostic]:
    if config.push and not config.tags:
        yield vc.error(
            "BK001", "push: true needs at least one tag to push", "push",
            hint="add tags: [\"registry:5000/app:tag\"]",
        )
    if not has_reference(config.output_type) and config.output_type not in OUTPUT_TYPES:
        yield vc.error(
            "BK002",
            f"unknown output_type {config.output_type!r}; expected one of "
            + ", ".join(OUTPUT_TYPES),
            "output_type",
        )
    if config.output_type in FILE_OUTPUTS and not config.output_dest:
        kind = "directory" if config.output_type == "local" else "file"
        yield vc.error(
            "BK003",
            f"output_type {config.output_type!r} needs output_dest (the {kind} to write)",
            "output_type",
        )
    if config.push and config.output_type in FILE_OUTPUTS:
        yield vc.error(
            "BK001", f"push: true cannot be combined with output_type {config.output_type!r}",
            "push",
        )
    for index, tag in enumerate(config.tags):
        if not has_reference(tag) and not valid_reference(tag):
            yield vc.error(
                "BK005",
                f"tag {tag!r} is not a valid image reference",
                "tags", index,
                hint="lower-case name, optional host:port/ prefix and :tag, e.g. "
                "127.0.0.1:5000/app:1.0",
            )
    if not has_reference(config.network) and config.network not in NETWORKS:
        yield vc.error(
            "BK006",
            f"unknown network {config.network!r}; expected one of {', '.join(NETWORKS)}",
            "network",
        )
    if config.timeout is not None and not has_reference(config.timeout):
        try:
            parse_duration(config.timeout)
        except ValueError as exc:
            yield vc.error("BK009", str(exc), "timeout")


def _check_address(config: BuildkitConfig, vc: ValidationContext) -> Iterator[Diagnostic]:
    from wfe_buildkit.address import parse_address
    from wfe_buildkit.errors import InvalidRequest

    address = config.buildkit_addr
    kind = None
    if address is not None and not has_reference(address):
        try:
            kind = parse_address(address).kind
        except InvalidRequest as exc:
            yield vc.error("BK007", str(exc), "buildkit_addr")
    if config.tls is None:
        return
    if kind is not None and kind != "tcp":
        yield vc.error("BK004", "tls settings apply only to tcp:// addresses", "tls")
    if (config.tls.cert is None) != (config.tls.key is None):
        yield vc.error("BK004", "tls.cert and tls.key must be given together", "tls")
    for field in ("ca", "cert", "key"):
        value = getattr(config.tls, field)
        if value and not has_reference(value) and not _resolve(vc.base_dir, value).is_file():
            yield vc.error(
                "BK004", f"TLS {field} file not found: {_resolve(vc.base_dir, value)}",
                "tls", field,
            )


def _check_paths(config: BuildkitConfig, vc: ValidationContext) -> Iterator[Diagnostic]:
    context_ok = not has_reference(config.context)
    if context_ok:
        context = _resolve(vc.base_dir, config.context)
        if not context.is_dir():
            yield vc.error(
                "BK008", f"build context directory not found: {context}", "context",
                hint="paths are relative to the workflow file's directory",
            )
            return
    if config.dockerfile is not None:
        if not has_reference(config.dockerfile):
            path = _resolve(vc.base_dir, config.dockerfile)
            if not path.is_file():
                yield vc.error(
                    "BK008", f"Dockerfile not found: {path}", "dockerfile",
                    hint="paths are relative to the workflow file's directory",
                )
    elif context_ok:
        path = _resolve(vc.base_dir, config.context) / "Dockerfile"
        if not path.is_file():
            yield vc.error(
                "BK008", f"no Dockerfile in the build context: {path}", "context",
                hint="add one or set dockerfile: to its path",
            )


def _check_secrets(config: BuildkitConfig, vc: ValidationContext) -> Iterator[Diagnostic]:
    for ident, source in config.secrets.items():
        if (source.file is None) == (source.env is None):
            yield vc.error(
                "BK010", f"secret {ident!r} needs exactly one of file: or env:", "secrets", ident
            )
    for index, entry in enumerate(config.ssh):
        ident, _, _path = entry.partition("=")
        if not ident:
            yield vc.error(
                "BK010", f"ssh entry {entry!r} must be ID or ID=/path/to/agent.sock", "ssh", index
            )


VALIDATORS = (_check_basics, _check_address, _check_paths, _check_secrets)

__all__ = [
    "FILE_OUTPUTS",
    "NETWORKS",
    "OUTPUT_TYPES",
    "VALIDATORS",
    "BuildkitConfig",
    "RegistryAuth",
    "SecretSource",
    "TLSSettings",
    "parse_duration",
    "valid_reference",
]
