"""Both registries serve their catalog; the authenticated one only with credentials."""

from __future__ import annotations

import json

import pytest

from tests.harness import RegistryServer, TestImages
from tests.harness.http_probe import tcp_get

pytestmark = pytest.mark.daemon


def test_plain_registry_catalog(registry: RegistryServer, test_images: TestImages) -> None:
    status, body = tcp_get(registry.host, "/v2/_catalog")
    assert status == 200
    repos = json.loads(body)["repositories"]
    assert {"wfe/busybox", "wfe/rich", "wfe/multiarch"} <= set(repos)


def test_auth_registry_needs_credentials(
    auth_registry: RegistryServer, test_images: TestImages
) -> None:
    status, _ = tcp_get(auth_registry.host, "/v2/_catalog")
    assert status == 401
    status, _ = tcp_get(auth_registry.host, "/v2/_catalog", auth=(auth_registry.username, "nope"))
    assert status == 401
    assert auth_registry.auth is not None
    status, body = tcp_get(auth_registry.host, "/v2/_catalog", auth=auth_registry.auth)
    assert status == 200
    assert "wfe/busybox" in json.loads(body)["repositories"]


def test_refs_point_at_the_right_registry(
    registry: RegistryServer, auth_registry: RegistryServer, test_images: TestImages
) -> None:
    assert test_images.ref("rich") == f"{registry.host}/wfe/rich:latest"
    assert test_images.ref("rich", auth=True) == f"{auth_registry.host}/wfe/rich:latest"
    assert test_images.pinned("busybox").startswith(f"{registry.host}/wfe/busybox@sha256:")


def test_manifest_digest_preserved(registry: RegistryServer, test_images: TestImages) -> None:
    """HEAD-equivalent: the registry reports the digest the harness computed."""
    import http.client

    conn = http.client.HTTPConnection(registry.host, timeout=5)
    try:
        conn.request(
            "GET",
            "/v2/wfe/multiarch/manifests/latest",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        assert resp.getheader("Docker-Content-Digest") == test_images.digest("multiarch")
    finally:
        conn.close()


def test_large_image_is_pushed_on_demand(registry: RegistryServer, test_images: TestImages) -> None:
    """``large``: busybox plus four ~15 MiB incompressible layers, about 60 MB in the registry."""
    ref = test_images.ref("large")
    assert ref == f"{registry.host}/wfe/large:latest"
    status, body = tcp_get(
        registry.host,
        f"/v2/wfe/large/manifests/{test_images.digest('large')}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert status == 200
    layers = json.loads(body)["layers"]
    assert len(layers) == 5
    assert all(layer["size"] > 15_000_000 for layer in layers[1:])
    assert 60_000_000 < sum(layer["size"] for layer in layers) < 70_000_000
