"""Unit tests (no daemon): references, platforms, chain IDs, spec building, users, config
validation, registry auth and redirects against small in-process HTTP servers."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cattrs
import pytest
from wfe_containerd.config import (
    ContainerdConfig,
    RegistryAuth,
    Volume,
    parse_cpu,
    parse_duration,
    parse_memory,
    validate,
)
from wfe_containerd.credentials import Credentials, from_docker_config
from wfe_containerd.errors import AuthError, RegistryError, RunError
from wfe_containerd.oci import (
    Descriptor,
    ImageConfig,
    Platform,
    chain_ids,
    normalize_platform,
    select_manifest,
)
from wfe_containerd.reference import ReferenceError, parse_reference
from wfe_containerd.registry import RegistryClient, is_loopback, parse_challenge
from wfe_containerd.spec import BindMount, RunOptions, build_spec, default_spec, merge_env
from wfe_containerd.userdb import ResolvedUser, resolve_user

from wfe_core.contracts import ValidationContext


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("user/app:1.0", "docker.io/user/app:1.0"),
        ("127.0.0.1:5000/wfe/busybox", "127.0.0.1:5000/wfe/busybox:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io/o/r@sha256:" + "a" * 64),
        ("index.docker.io/library/alpine:3.19", "docker.io/library/alpine:3.19"),
    ],
)
def test_reference_normalisation(ref: str, expected: str) -> None:
    assert str(parse_reference(ref)) == expected


def test_reference_errors() -> None:
    for bad in ("", "UPPER/case", "x@sha256:short", "bad//path", "x:bad tag"):
        with pytest.raises(ReferenceError):
            parse_reference(bad)
    assert parse_reference("busybox").api_host == "registry-1.docker.io"


def test_platforms_and_chain_ids() -> None:
    assert normalize_platform("linux", "x86_64") == Platform("linux", "amd64")
    assert normalize_platform("linux", "aarch64", "v8") == Platform("linux", "arm64")
    entries = [
        Descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            "sha256:arm",
            1,
            platform=Platform("linux", "arm64"),
        ),
        Descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            "sha256:i386",
            1,
            platform=Platform("linux", "386"),
        ),
        Descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            "sha256:amd",
            1,
            platform=Platform("linux", "amd64"),
        ),
        Descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            "sha256:att",
            1,
            platform=Platform("unknown", "unknown"),
        ),
    ]
    assert select_manifest(entries, Platform("linux", "amd64")).digest == "sha256:amd"  # type: ignore[union-attr]
    assert select_manifest(entries[1:2], Platform("linux", "amd64")).digest == "sha256:i386"  # type: ignore[union-attr]
    assert select_manifest(entries, Platform("linux", "s390x")) is None
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    expected = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_ids([a, b]) == [a, expected]


def test_default_spec_matches_ctr() -> None:
    spec = default_spec("ns", "cid")
    assert spec["linux"]["cgroupsPath"] == "/ns/cid"
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/run",
    ]
    assert len(spec["process"]["capabilities"]["bounding"]) == 14
    assert {"type": "network"} in spec["linux"]["namespaces"]


def test_build_spec_layers_image_and_options() -> None:
    image = ImageConfig(
        env=("PATH=/bin", "A=1"), entrypoint=("/ep",), cmd=("c",), working_dir="/w", user="app"
    )
    spec = build_spec(
        namespace="ns",
        container_id="cid",
        image=image,
        user=ResolvedUser(1, 2, (2,)),
        options=RunOptions(
            command=["x"],
            env={"A": "2", "B": "3"},
            mounts=[BindMount("/h", "/c", True)],
            memory_bytes=1 << 24,
            cpus=0.5,
            network="host",
            read_only_rootfs=True,
        ),
    )
    assert spec["process"]["args"] == ["/ep", "x"]
    assert spec["process"]["env"][:3] == ["PATH=/bin", "A=2", "B=3"]
    assert spec["process"]["cwd"] == "/w"
    assert spec["process"]["user"] == {"uid": 1, "gid": 2, "additionalGids": [2]}
    assert {"type": "network"} not in spec["linux"]["namespaces"]
    assert spec["linux"]["resources"]["memory"]["limit"] == 1 << 24
    assert spec["linux"]["resources"]["cpu"]["quota"] == 50000
    assert spec["root"]["readonly"] is True
    assert {
        "destination": "/c",
        "type": "bind",
        "source": "/h",
        "options": ["rbind", "ro"],
    } in spec["mounts"]
    full = build_spec(
        namespace="ns",
        container_id="cid",
        image=image,
        user=ResolvedUser(0, 0),
        options=RunOptions(args=["/bin/sh", "-c", "x"]),
    )
    assert full["process"]["args"] == ["/bin/sh", "-c", "x"]
    assert full["hostname"] == "cid"
    assert merge_env(["A=1", "B=2"], ["A", "C=3"]) == ["B=2", "C=3"]


def test_user_resolution() -> None:
    passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
    group = "root:x:0:\napp:x:1001:\nextra:x:2000:app,other\n"
    assert resolve_user("app", passwd, group) == ResolvedUser(1000, 1001, (1001, 2000))
    assert resolve_user("1000", passwd, group).gid == 1001
    assert resolve_user("4242", passwd, group) == ResolvedUser(4242, 0, (0,))
    assert resolve_user("app:extra", passwd, group).gid == 2000
    with pytest.raises(RunError, match="nobody"):
        resolve_user("nobody", passwd, group)


def test_parsers() -> None:
    assert parse_memory("512m") == 512 * 1024**2
    assert parse_memory("1Gi") == 1024**3
    assert parse_memory("16777216") == 16777216
    assert parse_cpu("500m") == 0.5 and parse_cpu("2") == 2.0
    assert (
        parse_duration("500ms") == 0.5 and parse_duration("10m") == 600 and parse_duration(3) == 3
    )
    for bad in ("lots", "1x", "1k"):
        with pytest.raises(ValueError):
            parse_memory(bad)
    with pytest.raises(ValueError):
        parse_cpu("0")


def _diagnostics(config: ContainerdConfig, base: Path) -> list[str]:
    ctx = ValidationContext(file="wf.yaml", workflow_id="wf", step_name="s", base_dir=base)
    return [f"{d.code} {d.message}" for d in validate(config, ctx)]


def test_validators(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    good = ContainerdConfig(image="busybox", run="true", volumes=[Volume("data", "/d")])
    assert _diagnostics(good, tmp_path) == []
    bad = ContainerdConfig(
        image="Bad Image",
        run="x",
        command=["y"],
        network="bridge",
        pull="sometimes",
        memory="lots",
        cpu="-1",
        timeout="soon",
        volumes=[Volume("missing", "relative")],
        namespace="bad ns",
    )
    codes = [d.split()[0] for d in _diagnostics(bad, tmp_path)]
    for code in (
        "CTRD001",
        "CTRD002",
        "CTRD003",
        "CTRD004",
        "CTRD005",
        "CTRD006",
        "CTRD007",
        "CTRD008",
        "CTRD009",
        "CTRD010",
    ):
        assert code in codes, (code, codes)
    neither = ContainerdConfig(image="busybox")
    assert any("exactly one" in d for d in _diagnostics(neither, tmp_path))
    templated = ContainerdConfig(
        image="${{ inputs.image }}",
        run="x",
        memory="${{ inputs.m }}",
        volumes=[Volume("${{ inputs.dir }}", "/d")],
    )
    assert _diagnostics(templated, tmp_path) == []


def test_config_structures_from_yaml_shapes() -> None:
    converter = cattrs.Converter(forbid_extra_keys=True)
    config = converter.structure(
        {
            "image": "busybox",
            "command": ["echo", "hi"],
            "env": {"A": "1"},
            "timeout": 30,
            "volumes": [{"source": ".", "target": "/w", "readonly": True}],
            "registry_auth": {"r.example": {"username": "u", "password": "secret-pw"}},
            "tls": {"ca": "/ca.pem"},
            "cpu": 0.5,
        },
        ContainerdConfig,
    )
    assert config.timeout == "30" and config.cpu == "0.5"
    assert config.registry_auth["r.example"] == RegistryAuth("u", "secret-pw")
    assert "secret-pw" not in repr(config)
    assert "secret-pw" not in repr(Credentials("u", "secret-pw"))


def test_docker_config_entries(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    auth = base64.b64encode(b"user:pa:ss").decode()
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth},
                    "r.example:5000": {"username": "u2", "password": "p2"},
                }
            }
        )
    )
    assert from_docker_config("docker.io", path) == Credentials("user", "pa:ss")
    assert from_docker_config("r.example:5000", path) == Credentials("u2", "p2")
    assert from_docker_config("other.example", path) is None
    path.write_text(json.dumps({"credHelpers": {"h.example": "definitely-missing-helper"}}))
    with pytest.raises(AuthError, match="docker-credential-definitely-missing-helper"):
        from_docker_config("h.example", path)


def test_challenges_and_loopback() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"'
    )
    assert (
        scheme == "bearer" and params["service"] == "reg" and params["scope"] == "repository:a:pull"
    )
    assert parse_challenge('Basic realm="x"')[0] == "basic"
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:80")
    assert not is_loopback("registry.example:5000")


# -- a scripted registry: bearer token auth and a cross-host redirect for blobs -------------------

BLOB = b"layer bytes" * 1000
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class _Server:
    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.seen: list[tuple[str, str | None]] = []
        self.httpd.seen = self.seen  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None

    def record(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    class CDN(_Quiet):
        def do_GET(self) -> None:
            self.record()
            self.send_response(200)
            self.send_header("Content-Length", str(len(BLOB)))
            self.end_headers()
            self.wfile.write(BLOB)

    cdn = _Server(CDN)

    class Registry(_Quiet):
        def do_GET(self) -> None:
            self.record()
            if self.path.startswith("/token"):
                ok = (
                    self.headers.get("Authorization")
                    == "Basic " + base64.b64encode(b"u:p").decode()
                )
                body = json.dumps({"token": "tok123", "expires_in": 300}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if self.headers.get("Authorization") != "Bearer tok123":
                self.send_response(401)
                realm = f"http://{self.headers['Host']}/token"
                self.send_header(
                    "WWW-Authenticate",
                    f'Bearer realm="{realm}",service="test",scope="repository:r:pull"',
                )
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(307)
            self.send_header("Location", f"http://{cdn.host}/blob?sig=1")
            self.send_header("Content-Length", "0")
            self.end_headers()

    registry = _Server(Registry)
    try:
        yield registry, cdn
    finally:
        registry.close()
        cdn.close()


def test_bearer_token_and_no_authorization_across_redirect(
    servers: tuple[_Server, _Server],
) -> None:
    registry, cdn = servers
    client = RegistryClient(registry.host, credentials=Credentials("u", "p"))
    data = client.fetch_blob_bytes(
        "r", Descriptor("application/octet-stream", BLOB_DIGEST, len(BLOB)), limit=1 << 20
    )
    assert data == BLOB
    token_calls = [auth for path, auth in registry.seen if path.startswith("/token")]
    assert token_calls and token_calls[0] is not None and token_calls[0].startswith("Basic ")
    assert ("/v2/r/blobs/" + BLOB_DIGEST, "Bearer tok123") in registry.seen
    assert cdn.seen == [("/blob?sig=1", None)]  # the token stayed with the registry
    anonymous = RegistryClient(registry.host)
    with pytest.raises(AuthError, match="refused"):
        anonymous.fetch_blob_bytes("r", Descriptor("x", BLOB_DIGEST, len(BLOB)))


def test_validation_does_not_import_grpc() -> None:
    """``wfe validate`` loads the plugin and runs its validators; grpc must stay unloaded."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from wfe_core.contracts import ValidationContext\n"
        "from wfe_containerd.executor import plugin\n"
        "from wfe_containerd.config import ContainerdConfig\n"
        "cfg = ContainerdConfig(image='busybox', run='x', platform='linux/arm64', memory='1g')\n"
        "list(plugin.validators[0](cfg, ValidationContext('f', 'w', 's', Path('.'))))\n"
        "assert 'grpc' not in sys.modules, 'grpc imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rate_limited_requests_are_retried() -> None:
    calls: list[str] = []
    manifest = json.dumps({"schemaVersion": 2, "layers": [], "config": {}}).encode()

    class Limited(_Quiet):
        def do_HEAD(self) -> None:
            calls.append(self.path)
            if len(calls) == 1:
                self.send_response(429)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header(
                "Docker-Content-Digest", "sha256:" + hashlib.sha256(manifest).hexdigest()
            )
            self.send_header("Content-Length", str(len(manifest)))
            self.end_headers()

    server = _Server(Limited)
    try:
        desc = RegistryClient(server.host).resolve("r", "latest")
    finally:
        server.close()
    assert len(calls) == 2
    assert desc.size == len(manifest)


@pytest.mark.parametrize(
    "example",
    sorted((Path(__file__).parents[2] / "examples" / "containerd").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_examples_compile(example: Path) -> None:
    compiler = pytest.importorskip("wfe_core.compiler")
    from wfe_core.plugins import PluginRegistry

    result = compiler.compile_file(example, PluginRegistry())
    assert result.ok, "\n".join(str(d) for d in result.diagnostics)


async def test_a_cancellation_swallowed_by_the_call_is_reraised(tmp_path: Path) -> None:
    """grpc.aio may answer a call cancelled as it completed: the cancellation must survive."""
    import asyncio

    from wfe_containerd.connection import Connection

    async def swallowing_call(request: object, metadata: object, timeout: object) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "response"  # what grpc.aio does when the RPC had already finished
        return "late"

    conn = Connection(str(tmp_path / "unused.sock"))
    try:
        task = asyncio.ensure_future(conn.call(swallowing_call, None))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await conn.close()


def test_pull_progress_lines_name_the_blob_kind() -> None:
    from wfe_containerd.executor import _blob_kind

    assert _blob_kind("application/vnd.docker.image.rootfs.diff.tar.gzip") == "layer"
    assert _blob_kind("application/vnd.oci.image.layer.v1.tar+gzip") == "layer"
    assert _blob_kind("application/vnd.docker.container.image.v1+json") == "config"
    assert _blob_kind("application/vnd.oci.image.config.v1+json") == "config"
    assert _blob_kind("application/vnd.docker.distribution.manifest.list.v2+json") == "index"
    assert _blob_kind("application/vnd.oci.image.index.v1+json") == "index"
    assert _blob_kind("application/vnd.docker.distribution.manifest.v2+json") == "manifest"
    assert _blob_kind("") == "blob"


async def test_a_failed_connect_closes_the_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``async with Client(...)`` that fails to connect runs no ``__aexit__``: the channel must
    be closed anyway, and so must gc's when the socket is missing."""
    from wfe_containerd import gc
    from wfe_containerd.client import Client
    from wfe_containerd.connection import Connection
    from wfe_containerd.errors import ConnectError

    closed: list[str] = []
    real_close = Connection.close

    async def close(self: Connection) -> None:
        closed.append(self.address)
        await real_close(self)

    monkeypatch.setattr(Connection, "close", close)
    missing = str(tmp_path / "nope.sock")
    with pytest.raises(ConnectError):
        async with Client(missing):
            pass
    assert closed == [missing]
    with pytest.raises(ConnectError):
        await gc.collect_garbage_async(missing)
    assert closed == [missing, missing]


def test_a_redirect_loop_error_leaves_out_the_signed_query() -> None:
    """Blob redirects go to pre-signed URLs: their query string must not reach the error."""

    class Loop(_Quiet):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "/elsewhere?X-Amz-Signature=s3cr3t")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = _Server(Loop)
    try:
        with pytest.raises(RegistryError, match="too many redirects") as info:
            RegistryClient(server.host).open_blob("r", Descriptor("x", BLOB_DIGEST, len(BLOB)))
    finally:
        server.close()
    assert "s3cr3t" not in str(info.value)
    assert "/elsewhere?..." in str(info.value)


async def test_a_failed_ingest_closes_its_chunk_source() -> None:
    """When the content store drops a write, the layer's source (an open registry download) is
    closed at once, not whenever the abandoned generator is collected."""
    import grpc.aio
    from wfe_containerd import content
    from wfe_containerd._pb.services import content_pb2
    from wfe_containerd.errors import PullError

    closed: list[bool] = []

    async def source(offset: int) -> Any:
        try:
            yield b"x"
            yield b"y"
        finally:
            closed.append(True)

    class Call:
        def __init__(self) -> None:
            self.last: Any = None

        async def write(self, request: Any) -> None:
            self.last = request

        async def read(self) -> Any:
            if self.last.action == content_pb2.STAT:
                return content_pb2.WriteContentResponse(offset=0)
            return grpc.aio.EOF  # the daemon went away mid-blob

        def cancel(self) -> None:
            pass

    class Conn:
        namespace = "ns"

        class content:  # shaped like Connection.content
            @staticmethod
            def Write(metadata: Any) -> Call:
                return Call()

        def metadata(self, lease: Any) -> tuple[()]:
            return ()

    with pytest.raises(PullError, match="closed the write stream"):
        await content.write_blob(
            Conn(),  # type: ignore[arg-type]
            ref="r",
            digest=BLOB_DIGEST,
            size=2,
            source=source,
            labels={},
            lease=None,
        )
    assert closed == [True]


def test_no_authorization_after_a_redirect_from_https_to_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same host, but plain http: the token would travel in the clear, so it is not sent."""
    sent: list[tuple[str, str | None]] = []

    class Response:
        def __init__(self, status: int, headers: dict[str, str]) -> None:
            self.status = status
            self.headers = headers

        def getheader(self, name: str, default: str | None = None) -> str | None:
            return self.headers.get(name, default)

        def read(self, *args: Any) -> bytes:
            return b""

        def close(self) -> None:
            pass

    class Connection:
        def __init__(self, scheme: str, netloc: str) -> None:
            self.origin = f"{scheme}://{netloc}"

        def request(self, method: str, target: str, headers: dict[str, str]) -> None:
            sent.append((self.origin + target, headers.get("Authorization")))

        def getresponse(self) -> Response:
            if self.origin.startswith("https:"):
                return Response(307, {"Location": "http://reg.example/v2/r/blobs/b"})
            return Response(200, {})

        def close(self) -> None:
            pass

    monkeypatch.setattr(RegistryClient, "_connect", lambda self, s, n: Connection(s, n))
    RegistryClient("reg.example")._send("GET", "https://reg.example/v2/r/blobs/b", {}, "Bearer t")
    assert sent == [
        ("https://reg.example/v2/r/blobs/b", "Bearer t"),
        ("http://reg.example/v2/r/blobs/b", None),
    ]


@pytest.mark.parametrize(
    ("hint", "prefix"),
    [("build", "wfe-build-"), ("Tést step_2", "wfe-t-st-step-2-"), ("--", "wfe-"), ("", "wfe-")],
)
def test_container_ids_satisfy_containerds_identifier_rule(hint: str, prefix: str) -> None:
    import re

    from wfe_containerd.client import new_container_id

    cid = new_container_id(hint)
    assert cid.startswith(prefix)
    assert re.fullmatch(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", cid) and len(cid) <= 76


async def test_a_download_cancelled_while_connecting_is_closed_once_open() -> None:
    """The worker thread opening a blob cannot be stopped; what it opens after the cancellation
    must still be closed."""
    import asyncio

    from wfe_containerd.pull import _registry_source

    release = threading.Event()
    closed: list[bool] = []

    class Stream:
        def read(self, size: int) -> bytes:
            return b""

        def close(self) -> None:
            closed.append(True)

    class Registry:
        def open_blob(self, repo: str, desc: Descriptor, offset: int) -> Stream:
            release.wait(5)
            return Stream()

    source = _registry_source(Registry(), "r", Descriptor("x", BLOB_DIGEST, 1))  # type: ignore[arg-type]
    chunks = source(0)
    first = asyncio.ensure_future(chunks.__anext__())
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    for _ in range(200):
        if closed:
            break
        await asyncio.sleep(0.01)
    assert closed == [True]
