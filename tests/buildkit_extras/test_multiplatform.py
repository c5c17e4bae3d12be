"""Multi-platform builds (``platforms: [linux/amd64, linux/arm64]``), issue 7 item 6.

Against the harness Docker Engine 20.10 (CI): ``local`` and ``tar`` exports come back split per
platform (``linux_amd64/``, ``linux_arm64/``) with each platform's own files; a ``moby`` export of
several platforms is refused before anything is built, with a message naming the limitation; a
``RUN`` that executes a binary of a platform the daemon cannot run (no binfmt/QEMU emulation)
fails with an error naming that platform. The foreign binary is a hand-made ELF header for the
other architecture (the kernel rejects it with ENOEXEC exactly like a real one), so no foreign
image or emulator is needed.

Against a standalone buildkitd (skipped when ``/opt/buildkit/bin/buildkitd`` is absent, as in
CI): the ``oci`` exporter writes an image index holding both platforms, the ``image`` exporter
with ``push=true`` pushes an index to the harness registry and the step's ``digest`` output is
the digest the registry serves for it, and an amd64-only base image built for arm64 produces the
daemon's ``InvalidBaseImagePlatform`` warning naming the platform.

Plus unit tests of the platform attribution and of the ``platforms`` validator (BK012).
"""

from __future__ import annotations

import json
import platform as host
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wfe_buildkit.client import (
    BuildFailed,
    Client,
    Export,
    UnsupportedByDaemon,
    WarningEvent,
)
from wfe_buildkit.config import BuildkitConfig
from wfe_buildkit.executor import plugin
from wfe_buildkit.progress import ProgressTracker, render_plain, vertex_platform

from tests.buildkit.test_standalone_buildkitd import (
    BINARY,
    buildkitd,  # noqa: F401 (fixture)
)
from tests.buildkit.trees import make_tree
from tests.buildkit_extras.daemon import Recorded, docker_address
from tests.harness import DockerDaemon, RegistryServer, TestImages
from wfe_core.contracts import (
    Diagnostic,
    Severity,
    StepContext,
    StepFailed,
    ValidationContext,
)

PLATFORMS = ["linux/amd64", "linux/arm64"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "buildkit"
_NATIVE = {"x86_64": "amd64", "aarch64": "arm64"}.get(host.machine())
#: ELF e_machine of the architecture the daemon cannot run natively.
_FOREIGN = {"amd64": ("arm64", 183), "arm64": ("amd64", 62)}.get(_NATIVE or "")
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def _scratch_context(root: Path) -> Path:
    """FROM scratch + COPY (no RUN: builds for any platform without emulation)."""
    make_tree(
        root,
        {
            "Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY hello.txt /hello.txt\n"
            "COPY arch-${TARGETARCH} /arch\n",
            "hello.txt": "hello\n",
            "arch-amd64": "amd64\n",
            "arch-arm64": "arm64\n",
        },
    )
    return root


def _foreign_elf(machine: int) -> bytes:
    """A minimal ELF64 executable header for ``machine``: the kernel refuses it (ENOEXEC)."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header = struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x80, 0x80, 0x1000)
    return ident + header + program + bytes(8)


def _emulation_context(root: Path) -> tuple[Path, str]:
    """Per platform a ``/bin/sh``: busybox for the host's, a foreign ELF for the other; RUN."""
    if _FOREIGN is None:
        pytest.skip(f"no foreign architecture defined for host {host.machine()}")
    foreign, machine = _FOREIGN
    qemu = "qemu-aarch64" if foreign == "arm64" else "qemu-x86_64"
    if Path("/proc/sys/fs/binfmt_misc", qemu).exists():
        pytest.skip(f"binfmt_misc emulation for {foreign} is registered on this host")
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).is_file():
        pytest.skip("busybox-static is not installed")
    make_tree(
        root,
        {
            "Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY sh-${TARGETARCH} /bin/sh\n"
            "RUN true\n",
            f"sh-{_NATIVE}": ("exec", Path(busybox).read_bytes()),
            f"sh-{foreign}": ("exec", _foreign_elf(machine)),
        },
    )
    return root, f"linux/{foreign}"


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """The package's leak check, except that this module's private buildkitd (module-scoped, a
    child of the test process) and what runs under it may stay up between tests."""
    yield
    import psutil

    from tests.harness import non_harness_children

    def under_buildkitd(proc: psutil.Process) -> bool:
        try:
            return any(BINARY in " ".join(p.cmdline()) for p in [proc, *proc.parents()])
        except psutil.Error:
            return True

    left = [p for p in non_harness_children() if p.is_running() and not under_buildkitd(p)]
    assert not left, f"processes left behind: {[p.cmdline() for p in left]}"


# --- Docker Engine 20.10 (CI) ----------------------------------------------------------------

@pytest.mark.daemon
async def test_local_and_tar_split_per_platform(
    tmp_path: Path, docker_daemon: DockerDaemon
) -> None:
    context = _scratch_context(tmp_path / "ctx")
    async with Client(docker_address(docker_daemon.socket)) as bk:
        await bk.build(context, platforms=PLATFORMS, exports=[Export.local(tmp_path / "out")])
        await bk.build(context, platforms=PLATFORMS, exports=[Export.tar(tmp_path / "o.tar")])
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["linux_amd64", "linux_arm64"]
    for arch in ("amd64", "arm64"):
        assert (out / f"linux_{arch}" / "hello.txt").read_text() == "hello\n"
        assert (out / f"linux_{arch}" / "arch").read_text() == f"{arch}\n"
    with tarfile.open(tmp_path / "o.tar") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert files == {
        "linux_amd64/hello.txt": b"hello\n", "linux_amd64/arch": b"amd64\n",
        "linux_arm64/hello.txt": b"hello\n", "linux_arm64/arch": b"arm64\n",
    }


@pytest.mark.daemon
async def test_moby_multi_platform_refused_before_building(
    tmp_path: Path, docker_daemon: DockerDaemon, registry: RegistryServer
) -> None:
    context = _scratch_context(tmp_path / "ctx")
    recorded = Recorded()
    async with Client(docker_address(docker_daemon.socket)) as bk:
        with pytest.raises(UnsupportedByDaemon) as info:
            await bk.build(
                context, platforms=PLATFORMS, progress=recorded,
                exports=[Export.moby([f"{registry.host}/wfe/multi:1"])],
            )
    text = str(info.value)
    assert text.startswith(docker_address(docker_daemon.socket))
    assert "multi-platform image (linux/amd64, linux/arm64)" in text
    assert "output_type local or tar" in text and "standalone buildkitd" in text
    assert not recorded.events  # refused up front: nothing was built


@pytest.mark.daemon
async def test_step_with_push_on_docker_names_the_limitation(
    tmp_path: Path, docker_daemon: DockerDaemon, registry: RegistryServer
) -> None:
    _scratch_context(tmp_path / "ctx")
    config = BuildkitConfig(
        context="ctx", buildkit_addr=docker_address(docker_daemon.socket),
        platforms=PLATFORMS, tags=[f"{registry.host}/wfe/multi:2"], push=True,
    )
    with pytest.raises(StepFailed) as info:
        await plugin.create(config).run(_ctx(tmp_path, config, []))  # type: ignore[misc]
    assert "cannot hold a multi-platform image" in str(info.value)
    assert "Traceback" not in str(info.value)


@pytest.mark.daemon
@pytest.mark.parametrize("platforms", ["both", "foreign only"])
async def test_failing_platform_is_named(
    tmp_path: Path, docker_daemon: DockerDaemon, platforms: str
) -> None:
    context, foreign = _emulation_context(tmp_path / "ctx")
    wanted = [f"linux/{_NATIVE}", foreign] if platforms == "both" else [foreign]
    async with Client(docker_address(docker_daemon.socket)) as bk:
        with pytest.raises(BuildFailed) as info:
            await bk.build(
                context, platforms=wanted, network="none",
                exports=[Export.local(tmp_path / "out")],
            )
    failure = info.value
    assert failure.platform == foreign
    assert failure.location == "Dockerfile:4"
    text = str(failure)
    assert text.startswith(f"build failed for {foreign} at ")
    assert "exec format error" in text
    assert f"the daemon cannot run {foreign} binaries: no emulation" in text
    assert "binfmt" in text and f"linux/{_NATIVE}" in text.split("natively for")[1]


@pytest.mark.daemon
def test_example_workflow(tmp_path: Path, docker_daemon: DockerDaemon) -> None:
    """examples/buildkit/multiplatform.yaml through ``wfe run`` (the index step is skipped)."""
    example = tmp_path / "example"
    shutil.copytree(EXAMPLE, example, symlinks=True, ignore=shutil.ignore_patterns("out"))
    proc = subprocess.run(
        [sys.executable, "-c", "from wfe_core.cli import main; main()", "run",
         str(example / "multiplatform.yaml"), "-i",
         f"buildkit_addr={docker_address(docker_daemon.socket)}", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = json.loads(proc.stdout)["steps"]
    assert "built for linux/amd64\nbuilt for linux/arm64" in steps["report"]["outputs"]["stdout"]
    out = Path(steps["per-platform"]["outputs"]["output_dest"])
    assert sorted(p.name for p in out.iterdir()) == ["linux_amd64", "linux_arm64"]


# --- standalone buildkitd (not in CI) --------------------------------------------------------


def _ctx(base: Path, config: BuildkitConfig, sink: list[tuple[str, str]]) -> StepContext:
    return StepContext(
        run_id="r1", workflow_id="w", step_name="build", attempt=1, config=config,
        inputs={}, outputs={}, workspace=base / "ws", base_dir=base,
        log_sink=lambda stream, text: sink.append((stream, text)),
        progress_sink=lambda _event: None,
    )


def _platforms(manifests: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in manifests)


@pytest.mark.daemon
async def test_oci_export_is_an_index(tmp_path: Path, buildkitd: str) -> None:  # noqa: F811
    context = _scratch_context(tmp_path / "ctx")
    async with Client(buildkitd) as bk:
        result = await bk.build(
            context, platforms=PLATFORMS, exports=[Export.oci(tmp_path / "oci.tar", ["m:1"])]
        )
    with tarfile.open(tmp_path / "oci.tar") as tar:
        top = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        [entry] = top["manifests"]
        assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert entry["digest"] == result.digest
        blob = f"blobs/sha256/{entry['digest'].split(':')[1]}"
        index = json.load(tar.extractfile(blob))  # type: ignore[arg-type]
    assert _platforms(index["manifests"]) == PLATFORMS


@pytest.mark.daemon
async def test_pushed_index_digest_is_the_registrys(
    tmp_path: Path, buildkitd: str, registry: RegistryServer  # noqa: F811
) -> None:
    _scratch_context(tmp_path / "ctx")
    tag = f"{registry.host}/wfe/multiplatform:{int(time.time() * 1000)}"
    config = BuildkitConfig(
        context="ctx", buildkit_addr=buildkitd, platforms=PLATFORMS, tags=[tag], push=True,
    )
    sink: list[tuple[str, str]] = []
    result = await plugin.create(config).run(_ctx(tmp_path, config, sink))  # type: ignore[misc]
    request = urllib.request.Request(
        f"http://{registry.host}/v2/wfe/multiplatform/manifests/{tag.rsplit(':', 1)[1]}",
        headers={"Accept": ", ".join(INDEX_TYPES)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        served = response.headers["Docker-Content-Digest"]
        body = json.load(response)
    assert body["mediaType"] in INDEX_TYPES
    assert _platforms(body["manifests"]) == PLATFORMS
    assert result.outputs["digest"] == served


@pytest.mark.daemon
async def test_failing_platform_is_named_on_buildkitd(
    tmp_path: Path, buildkitd: str  # noqa: F811
) -> None:
    context, foreign = _emulation_context(tmp_path / "ctx")
    async with Client(buildkitd) as bk:
        with pytest.raises(BuildFailed) as info:
            await bk.build(context, platforms=[f"linux/{_NATIVE}", foreign], network="none",
                           exports=[Export.local(tmp_path / "out")])
    assert info.value.platform == foreign
    assert "exec format error" in str(info.value) and "no emulation" in str(info.value)


@pytest.mark.daemon
async def test_single_platform_base_warns_naming_the_platform(
    tmp_path: Path, buildkitd: str, test_images: TestImages  # noqa: F811
) -> None:
    if _FOREIGN is None:
        pytest.skip(f"no foreign architecture defined for host {host.machine()}")
    foreign = f"linux/{_FOREIGN[0]}"
    base = test_images.ref("busybox")  # the host's architecture only, no index
    make_tree(tmp_path / "ctx", {"Dockerfile": f"FROM {base}\nRUN true\n"})
    recorded = Recorded()
    async with Client(buildkitd) as bk:
        await bk.build(tmp_path / "ctx", platforms=[foreign], network="none", progress=recorded,
                       exports=[Export.local(tmp_path / "out")])
    warnings = [e for e in recorded.events if isinstance(e, WarningEvent)]
    assert any("InvalidBaseImagePlatform" in w.message and foreign in w.message
               for w in warnings), warnings
    rendered = render_plain(warnings[0])
    assert rendered is not None and "WARNING: InvalidBaseImagePlatform" in rendered[1]


# --- units -----------------------------------------------------------------------------------


class _Msg:
    """Just enough of a StatusResponse for ProgressTracker.feed."""

    def __init__(self, vertexes: list[Any]) -> None:
        self.vertexes = vertexes
        self.statuses: list[Any] = []
        self.logs: list[Any] = []
        self.warnings: list[Any] = []


class _V:
    def __init__(self, digest: str, name: str, inputs: tuple[str, ...] = (),
                 error: str = "") -> None:
        self.digest, self.name, self.inputs, self.error = digest, name, inputs, error
        self.cached = False

    def HasField(self, _name: str) -> bool:
        return False


def test_platform_comes_from_the_nearest_named_input() -> None:
    tracker = ProgressTracker()
    tracker.feed(_Msg([
        _V("ctx", "[internal] load build context"),
        _V("copy-a", "[linux/arm64 1/2] COPY sh-arm64 /bin/sh", ("ctx",)),
        _V("copy-b", "[linux/amd64 1/2] COPY sh-amd64 /bin/sh", ("ctx",)),
        _V("run-a", "[2/2] RUN true", ("copy-a",), error="exit code: 1"),
        _V("meta", "[linux/arm64/v8 internal] load metadata for x"),
    ]))
    assert tracker.platform_of("run-a") == "linux/arm64"
    assert tracker.platform_of("copy-b") == "linux/amd64"
    assert tracker.platform_of("meta") == "linux/arm64/v8"
    assert tracker.platform_of("ctx") is None
    failed = tracker.failed_vertex()
    assert failed is not None and failed.digest == "run-a"
    assert vertex_platform("[1/2] RUN x") is None
    assert vertex_platform("[stage-1 2/3] RUN x") is None
    assert vertex_platform("[linux/amd64 builder 2/3] RUN x") == "linux/amd64"


def _diagnostics(tmp_path: Path, **fields: Any) -> list[Diagnostic]:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    vc = ValidationContext(file="wf.yaml", workflow_id="w", step_name="b", base_dir=tmp_path)
    config = BuildkitConfig(**fields)
    return [d for v in plugin.validators for d in v(config, vc)]


@pytest.mark.parametrize(
    ("platforms", "message", "hint"),
    [
        (["linux/amd64", "linux/arm64", "linux/arm/v7"], None, None),
        (["${{ inputs.platform }}"], None, None),
        (["linux"], "is not os/arch[/variant]", "linux/arm64"),
        (["Linux/AMD64"], "is not os/arch[/variant]", "linux/arm64"),
        (["linux/arm64/v8/x"], "is not os/arch[/variant]", "linux/arm64"),
        (["linux/amd46"], "unknown architecture 'amd46'", "did you mean linux/amd64?"),
        (["lnux/amd64"], "unknown operating system 'lnux'", "did you mean linux/amd64?"),
        (["linux/amd64", "linux/amd64"], "is listed twice", None),
    ],
)
def test_platforms_validator(
    tmp_path: Path, platforms: list[str], message: str | None, hint: str | None
) -> None:
    found = [d for d in _diagnostics(tmp_path, platforms=platforms) if d.code == "BK012"]
    if message is None:
        assert found == []
        return
    [diagnostic] = found
    assert diagnostic.severity == Severity.ERROR and message in diagnostic.message
    assert diagnostic.line is not None
    if hint:
        assert diagnostic.hint is not None and hint in diagnostic.hint


def test_platform_alias_and_moby_are_warnings(tmp_path: Path) -> None:
    [alias] = _diagnostics(tmp_path, platforms=["linux/x86_64"])
    assert (alias.code, alias.severity) == ("BK012", Severity.WARNING)
    assert alias.hint == "write linux/amd64"
    [moby] = _diagnostics(tmp_path, platforms=PLATFORMS, output_type="moby")
    assert (moby.code, moby.severity) == ("BK012", Severity.WARNING)
    assert "containerd image store" in moby.message
