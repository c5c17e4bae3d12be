"""Harness pieces that need no daemon: requirements, OCI layouts, mountinfo parsing, env output."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.harness import HarnessUnavailable, images, require
from tests.harness.__main__ import env_lines
from tests.harness.mounts import _unescape
from tests.harness.oci_layout import MT_INDEX, MT_MANIFEST


def test_require_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y docker-registry"):
        require("registry")


def test_require_errors_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(HarnessUnavailable, match=r"skopeo.*apt-get install -y .*skopeo"):
        require("images")


def test_require_passes_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require("sh")  # every machine has it


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def _manifest(layout: Path, digest: str) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = json.loads(_blob(layout, digest))
    assert manifest["mediaType"] == MT_MANIFEST
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    for layer in manifest["layers"]:
        assert len(_blob(layout, layer["digest"])) == layer["size"]
    return manifest, config


def _members(layout: Path, manifest: dict[str, Any]) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    for layer in manifest["layers"]:
        raw = gzip.decompress(_blob(layout, layer["digest"]))
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            members.update({m.name: m for m in tar.getmembers()})
    return members


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    require("busybox")
    root = tmp_path_factory.mktemp("layouts")
    base = images.busybox_layer()
    return {n: (root / n, images.build_layout(n, root / n, base)) for n in images.EAGER}


def test_layouts_are_deterministic(layouts: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    for name, (_, digest) in layouts.items():
        assert images.build_layout(name, tmp_path / name) == digest


def test_index_json_tags_latest(layouts: dict[str, tuple[Path, str]]) -> None:
    for path, digest in layouts.values():
        index = json.loads((path / "index.json").read_text())
        (entry,) = index["manifests"]
        assert entry["digest"] == digest
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == images.TAG
        assert json.loads((path / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"


def test_busybox_image(layouts: dict[str, tuple[Path, str]]) -> None:
    path, digest = layouts["busybox"]
    manifest, config = _manifest(path, digest)
    assert config["config"]["Cmd"] == ["sh"]
    assert config["architecture"] == images.host_architecture()
    members = _members(path, manifest)
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["bin/busybox"].mode == 0o755
    assert members["tmp"].mode == 0o1777
    assert "etc/passwd" in members
    assert {m.mtime for m in members.values()} == {1_700_000_000}


def test_rich_image(layouts: dict[str, tuple[Path, str]]) -> None:
    path, digest = layouts["rich"]
    manifest, config = _manifest(path, digest)
    assert len(manifest["layers"]) == 3
    cfg = config["config"]
    assert cfg["User"] == images.RICH_USER
    assert cfg["Env"] == list(images.RICH_ENV)
    assert cfg["WorkingDir"] == images.RICH_WORKDIR
    assert cfg["Entrypoint"] == list(images.RICH_ENTRYPOINT)
    assert cfg["Cmd"] == list(images.RICH_CMD)
    members = _members(path, manifest)
    assert members["home/app"].uid == images.RICH_UID
    assert members["app/entrypoint.sh"].mode == 0o755


def test_multiarch_index(layouts: dict[str, tuple[Path, str]]) -> None:
    path, digest = layouts["multiarch"]
    index = json.loads(_blob(path, digest))
    assert index["mediaType"] == MT_INDEX
    platforms = {
        (m["platform"]["architecture"], m["platform"].get("variant")) for m in index["manifests"]
    }
    assert platforms == {("amd64", None), ("arm64", "v8")}
    for entry in index["manifests"]:
        _, config = _manifest(path, entry["digest"])
        assert config["architecture"] == entry["platform"]["architecture"]


def test_mountinfo_unescape() -> None:
    assert _unescape(r"/tmp/a\040b\011c") == "/tmp/a b\tc"


def test_env_lines_quote_and_cover_services() -> None:
    state = {
        "services": {
            "containerd": {"address": "/t/c.sock"},
            "docker": {"host": "unix:///t/d.sock", "socket": "/t/d.sock"},
            "registry": {"host": "127.0.0.1:1"},
            "auth_registry": {"host": "127.0.0.1:2", "username": "wfe", "password": "p w"},
        },
        "images": {"busybox": {"refs": {"plain": "127.0.0.1:1/wfe/busybox:latest"}}},
    }
    lines = env_lines(state, Path("/t/harness.json"))
    assert "export BUILDKIT_HOST=docker+unix:///t/d.sock" in lines
    assert "export WFE_AUTH_REGISTRY_PASSWORD='p w'" in lines
    assert "export WFE_IMAGE_BUSYBOX=127.0.0.1:1/wfe/busybox:latest" in lines
