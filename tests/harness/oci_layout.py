"""Writing OCI image layouts by hand: deterministic tar layers, gzip, sha256 blobs, index.json.

Everything is reproducible byte for byte (fixed mtimes, owners, ordering and gzip headers), so the
same harness code always yields the same digests and registries dedupe across runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Fixed timestamp for every tar entry and image config (2023-11-14T22:13:20Z).
MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys: stable digests for configs, manifests and indexes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class LayerBuilder:
    """Collects entries of one layer and renders them as a tar in sorted path order."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, path: str, kind: bytes, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.strip("/"))
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = MTIME
        return info

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> LayerBuilder:
        self._entries[path.strip("/")] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), None)
        return self

    def file(
        self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> LayerBuilder:
        info = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self._entries[path.strip("/")] = (info, data)
        return self

    def symlink(self, path: str, target: str) -> LayerBuilder:
        info = self._info(path, tarfile.SYMTYPE, 0o777, 0, 0)
        info.linkname = target
        self._entries[path.strip("/")] = (info, None)
        return self

    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self._entries):
                info, data = self._entries[name]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


@dataclass(frozen=True)
class Layer:
    """A gzip-compressed layer blob and its uncompressed digest (the config's diff_id)."""

    blob: bytes
    diff_id: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.blob)

    @classmethod
    def from_builder(cls, builder: LayerBuilder, *, level: int = 6) -> Layer:
        raw = builder.tar_bytes()
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=level) as gz:
            gz.write(raw)
        return cls(blob=buf.getvalue(), diff_id=sha256_digest(raw))


@dataclass
class OCILayout:
    """An OCI image layout directory being written: blobs plus a tagged index.json."""

    path: Path
    refs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        """Store a blob and return its descriptor."""
        digest = sha256_digest(data)
        target = self.path / "blobs" / "sha256" / digest.split(":", 1)[1]
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def image(
        self,
        layers: list[Layer],
        config: dict[str, Any],
        *,
        architecture: str,
        variant: str | None = None,
    ) -> dict[str, Any]:
        """Write config + layers + manifest; returns the manifest descriptor with its platform."""
        platform: dict[str, Any] = {"architecture": architecture, "os": "linux"}
        if variant:
            platform["variant"] = variant
        image_config = {
            **platform,
            "created": CREATED,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created": CREATED, "created_by": "wfe test harness"} for _ in layers],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": self.blob(canonical_json(image_config), MT_CONFIG),
            "layers": [self.blob(layer.blob, MT_LAYER_GZIP) for layer in layers],
        }
        return self.blob(canonical_json(manifest), MT_MANIFEST, platform=platform)

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        """Write an image index over ``manifests``; returns its descriptor."""
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        return self.blob(canonical_json(index), MT_INDEX)

    def tag(self, descriptor: dict[str, Any], tag: str) -> None:
        """Name ``descriptor`` in index.json (platform dropped: it belongs to index entries)."""
        entry = {k: v for k, v in descriptor.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.refs = [r for r in self.refs if r["annotations"] != entry["annotations"]] + [entry]
        top = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": self.refs}
        (self.path / "index.json").write_bytes(canonical_json(top))
