"""The ``buildkit`` step's configuration and its validators.

``BuildkitConfig`` holds the reference engine's fields (``dockerfile``, ``context``, ``target``,
``tags``, ``build_args``, ``cache_from``, ``cache_to``, ``push``, ``output_type``,
``buildkit_addr``, ``tls``, ``registry_auth``, ``timeout``) plus ``output_dest``, ``platforms``,
``labels``, ``no_cache``, ``network``, ``secrets`` and ``ssh``. Relative paths resolve against
the workflow file's directory. Validators run before anything executes and accept
``${{ ... }}`` references wherever a value is only known at run time.

Diagnostic codes: BK001 push without tags, BK002 unknown output_type, BK003 output_dest missing,
BK004 TLS file missing / TLS without tcp, BK005 bad tag, BK006 bad network, BK007 bad address,
BK008 context/Dockerfile missing, BK009 bad timeout, BK010 bad registry_auth/secrets/ssh entry,
BK011 bad cache_from/cache_to entry, BK012 bad ``platforms`` entry (an error for bad syntax or
an unknown architecture, a warning for an alias such as ``x86_64`` that BuildKit normalizes, or a
multi-platform ``moby`` output, which Docker's classic image store cannot hold).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from wfe_buildkit.config_entries import entry_fields, resolve_under
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
_PLATFORM = re.compile(r"^([a-z0-9]+)/([a-z0-9_]+)(?:/([a-z0-9]+))?$")
#: GOOS values BuildKit can target, and GOARCH values (containerd's platforms package).
OPERATING_SYSTEMS = ("linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "illumos",
                     "solaris", "aix", "dragonfly", "plan9", "js", "wasip1")
ARCHITECTURES = ("amd64", "arm64", "arm", "386", "ppc64le", "ppc64", "s390x", "riscv64",
                 "mips64le", "mips64", "mipsle", "mips", "loong64", "wasm")
#: Names people use that BuildKit normalizes (containerd's platforms.Normalize).
ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm/v7",
                "armel": "arm/v6", "i386": "386", "i686": "386"}
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
    """Credentials for one registry host: a username and where its password comes from.

    The password itself is never written in a workflow: it is read from the environment variable
    ``password_env`` or the file ``password_file`` when the build starts.
    """

    username: str = ""
    password_env: str | None = None
    password_file: str | None = None
    #: Accepted only to be refused with a clear diagnostic (BK010): never put a password inline.
    password: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class SecretEntry:
    """A build secret (``RUN --mount=type=secret,id=ID``) read from a file or an env variable."""

    id: str
    src: str | None = None
    env: str | None = None


@attrs.frozen
class SSHEntry:
    """An SSH agent for ``RUN --mount=type=ssh``: the user's agent or a private one with keys."""

    id: str = "default"
    agent: bool = False
    paths: list[str] = attrs.field(factory=list)


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
    secrets: list[SecretEntry] = attrs.field(factory=list)
    ssh: list[SSHEntry] = attrs.field(factory=list)
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
    return resolve_under(Path(value), base)


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


def _check_platforms(config: BuildkitConfig, vc: ValidationContext) -> Iterator[Diagnostic]:
    """``os/arch[/variant]`` entries: caught here, before a build that would fail (or worse, run
    under the wrong name) on the daemon; the daemon's own parse error names no step."""
    import difflib

    seen: set[str] = set()
    literal = [p for p in config.platforms if not has_reference(p)]
    for index, entry in enumerate(config.platforms):
        if has_reference(entry):
            continue
        match = _PLATFORM.match(entry.strip())
        if not match:
            yield vc.error(
                "BK012", f"platform {entry!r} is not os/arch[/variant]", "platforms", index,
                hint="e.g. linux/amd64, linux/arm64, linux/arm/v7",
            )
            continue
        os_name, arch, variant = match.groups()
        if os_name not in OPERATING_SYSTEMS:
            near = difflib.get_close_matches(os_name, OPERATING_SYSTEMS, 1)
            yield vc.error(
                "BK012", f"platform {entry!r}: unknown operating system {os_name!r}",
                "platforms", index,
                hint=f"did you mean {near[0]}/{arch}?" if near else "use e.g. linux/amd64",
            )
        elif arch in ARCH_ALIASES:
            canonical = f"{os_name}/{ARCH_ALIASES[arch]}"
            yield vc.warning(
                "BK012", f"platform {entry!r} uses the alias {arch!r}; BuildKit builds it as "
                f"{canonical}", "platforms", index, hint=f"write {canonical}",
            )
        elif arch not in ARCHITECTURES:
            near = difflib.get_close_matches(arch, ARCHITECTURES, 1)
            yield vc.error(
                "BK012", f"platform {entry!r}: unknown architecture {arch!r}", "platforms", index,
                hint=(f"did you mean {os_name}/{near[0]}?" if near else
                      "known: " + ", ".join(ARCHITECTURES)),
            )
        key = entry.strip() if variant else f"{os_name}/{arch}"
        if key in seen:
            yield vc.error(
                "BK012", f"platform {entry!r} is listed twice", "platforms", index,
            )
        seen.add(key)
    if len(literal) > 1 and config.output_type == "moby":
        yield vc.warning(
            "BK012",
            "output_type 'moby' with several platforms needs Docker's containerd image store; "
            "the classic image store (Docker 20.10's, and later engines' unless the containerd "
            "store is enabled) refuses it",
            "output_type",
            hint="use output_type local/tar (a directory per platform), or a standalone buildkitd "
            "with output_type image (push: true pushes an image index) or oci",
        )


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


def _references(value: object) -> bool:
    if isinstance(value, str):
        return has_reference(value)
    if isinstance(value, list | tuple):
        return any(_references(v) for v in value)
    if isinstance(value, dict):
        return any(_references(v) for v in value.values())
    fields = entry_fields(value)  # an attrs entry (RegistryAuth, SecretEntry...)
    return fields is not None and any(_references(v) for v in fields.values())


def _check_session_options(
    config: BuildkitConfig, vc: ValidationContext
) -> Iterator[Diagnostic]:
    """registry_auth, secrets, ssh and cache entries, checked by the modules that serve them."""
    from wfe_buildkit.build_secrets import SecretsConfigError, parse_secrets
    from wfe_buildkit.cache_options import CacheOptionError, parse_cache_list
    from wfe_buildkit.registry_auth import RegistryAuthError, parse_registry_auth
    from wfe_buildkit.ssh_forward import SSHForwardError, parse_ssh

    checks: list[tuple[str, str, object, Callable[[Any], object]]] = [
        ("BK010", "registry_auth", config.registry_auth, parse_registry_auth),
        ("BK010", "secrets", config.secrets, parse_secrets),
        ("BK010", "ssh", config.ssh, parse_ssh),
        ("BK011", "cache_from", config.cache_from,
         lambda raw: parse_cache_list(raw, "cache_from")),
        ("BK011", "cache_to", config.cache_to, lambda raw: parse_cache_list(raw, "cache_to")),
    ]
    errors = (RegistryAuthError, SecretsConfigError, SSHForwardError, CacheOptionError)
    for code, key, value, parse in checks:
        if not value or _references(value):
            continue
        try:
            parse(value)
        except errors as exc:
            yield vc.error(code, str(exc), key)


VALIDATORS = (
    _check_basics, _check_platforms, _check_address, _check_paths, _check_session_options
)

__all__ = [
    "ARCHITECTURES",
    "ARCH_ALIASES",
    "FILE_OUTPUTS",
    "NETWORKS",
    "OPERATING_SYSTEMS",
    "OUTPUT_TYPES",
    "VALIDATORS",
    "BuildkitConfig",
    "RegistryAuth",
    "SSHEntry",
    "SecretEntry",
    "TLSSettings",
    "parse_duration",
    "valid_reference",
]
