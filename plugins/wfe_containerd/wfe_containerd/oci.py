"""OCI and Docker image formats: media types, descriptors, platform matching, chain IDs.

Pure functions over JSON documents; no I/O. Used by the pull, the unpack and the spec builder.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from wfe_containerd.errors import PullError

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
)
INDEX_TYPES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
MANIFEST_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
ACCEPT_MANIFESTS = ", ".join(
    [MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX, "*/*"]
)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@attrs.frozen
class Descriptor:
    """What a registry or content store knows about one blob."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    platform: Platform | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise PullError(f"malformed descriptor in {where}")
        try:
            plat = data.get("platform")
            return cls(
                media_type=str(data.get("mediaType", "")),
                digest=str(data["digest"]),
                size=int(data["size"]),
                annotations=dict(data.get("annotations") or {}),
                platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            )
        except (KeyError, TypeError, ValueError):
            raise PullError(f"malformed descriptor in {where}: {json.dumps(data)[:200]}") from None


@attrs.frozen
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Platform:
        return normalize_platform(
            str(data.get("os", "")), str(data.get("architecture", "")), str(data.get("variant", ""))
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
    "armhf": "arm",
    "armel": "arm",
}


def normalize_platform(os_name: str, arch: str, variant: str = "") -> Platform:
    os_name = os_name.lower()
    arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    variant = variant.lower()
    if arch == "arm64" and variant in ("v8", "8"):
        variant = ""
    if arch == "arm" and not variant:
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_name, arch, variant)


def parse_platform(text: str) -> Platform:
    """``linux/amd64``, ``linux/arm/v7``, or just ``arm64`` (os defaults to linux)."""
    parts = text.strip().split("/")
    if len(parts) == 1:
        return normalize_platform("linux", parts[0])
    if len(parts) in (2, 3):
        return normalize_platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")


def host_platform() -> Platform:
    return normalize_platform("linux", _platform.machine())


def compatible_platforms(target: Platform) -> list[Platform]:
    """Platforms that can run on ``target``, best first (as containerd's default matcher)."""
    if target.architecture == "amd64":
        return [target, Platform(target.os, "386")]
    if target.architecture == "arm64":
        return [target] + [Platform(target.os, "arm", v) for v in ("v8", "v7", "v6", "v5")]
    if target.architecture == "arm":
        order = ["v8", "v7", "v6", "v5"]
        start = order.index(target.variant) if target.variant in order else 1
        return [Platform(target.os, "arm", v) for v in order[start:]]
    return [target]


def select_manifest(manifests: Sequence[Descriptor], target: Platform) -> Descriptor | None:
    """The best manifest for ``target`` among an index's entries, or None."""
    ranked = compatible_platforms(target)
    best: tuple[int, Descriptor] | None = None
    for desc in manifests:
        if desc.platform is None or desc.media_type not in (*MANIFEST_TYPES, ""):
            continue
        if desc.platform in ranked:
            rank = ranked.index(desc.platform)
            if best is None or rank < best[0]:
                best = (rank, desc)
    return best[1] if best else None


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Snapshot chain IDs: chain[0]=diff[0], chain[i]=sha256(chain[i-1] + " " + diff[i])."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            joined = f"{chain[-1]} {diff_id}".encode()
            chain.append("sha256:" + hashlib.sha256(joined).hexdigest())
    return chain


@attrs.frozen
class ImageConfig:
    """The parts of an image config that shape a container."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    diff_ids: tuple[str, ...] = ()
    platform: Platform | None = None

    @classmethod
    def from_json(cls, raw: bytes) -> ImageConfig:
        try:
            data = json.loads(raw)
        except ValueError:
            raise PullError("image config is not valid JSON") from None
        cfg = data.get("config") or {}
        rootfs = data.get("rootfs") or {}
        return cls(
            env=tuple(cfg.get("Env") or ()),
            entrypoint=tuple(cfg.get("Entrypoint") or ()),
            cmd=tuple(cfg.get("Cmd") or ()),
            working_dir=str(cfg.get("WorkingDir") or ""),
            user=str(cfg.get("User") or ""),
            stop_signal=str(cfg.get("StopSignal") or ""),
            diff_ids=tuple(rootfs.get("diff_ids") or ()),
            platform=normalize_platform(
                str(data.get("os", "")),
                str(data.get("architecture", "")),
                str(data.get("variant", "")),
            ),
        )


def parse_manifest(raw: bytes, where: str) -> tuple[Descriptor, list[Descriptor]]:
    """A manifest's config descriptor and layer descriptors."""
    data = _json(raw, where)
    config = Descriptor.from_json(data.get("config"), where)
    layers = [Descriptor.from_json(layer, where) for layer in data.get("layers") or []]
    return config, layers


def parse_index(raw: bytes, where: str) -> list[Descriptor]:
    data = _json(raw, where)
    return [Descriptor.from_json(m, where) for m in data.get("manifests") or []]


def detect_media_type(raw: bytes, fallback: str) -> str:
    """The media type declared in a document, for registries that answer with a generic one."""
    try:
        data = json.loads(raw)
    except ValueError:
        return fallback
    if isinstance(data, dict):
        declared = data.get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
        if "manifests" in data:
            return MEDIA_OCI_INDEX
        if "layers" in data and "config" in data:
            return MEDIA_OCI_MANIFEST
        if data.get("schemaVersion") == 1:
            return MEDIA_SCHEMA1[0]
    return fallback


def _json(raw: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise PullError(f"{where} is not valid JSON") from None
    if not isinstance(data, dict):
        raise PullError(f"{where} is not a JSON object")
    return data
