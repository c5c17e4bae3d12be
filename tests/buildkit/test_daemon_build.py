"""Real builds against Docker Engine's embedded BuildKit: upload, RUN, local/tar/moby exports.

The context holds a nested tree, an empty directory, an executable, a symlink, a name with a
space, ``a`` vs ``a-b`` ordering and a file larger than one DATA chunk; the exported ``/ctx`` must
match it byte for byte with modes and symlinks.
"""

from __future__ import annotations

import asyncio
import os
import tarfile
from pathlib import Path

import pytest
from wfe_buildkit.client import Client, Export, VertexEvent
from wfe_buildkit.engine import DockerEngine

from tests.buildkit.trees import make_tree, snapshot
from tests.harness import DockerDaemon

pytestmark = pytest.mark.daemon

BIG = os.urandom(3 * 1024 * 1024 + 17)


def _context(root: Path, base: str) -> Path:
    make_tree(
        root,
        {
            "Dockerfile": (
                f"FROM {base}\n"
                "COPY . /ctx\n"
                "RUN /ctx/bin/run.sh > /ran.txt && test -x /ctx/bin/run.sh && echo built-ok\n"
            ),
            "a.txt": "hello from the context\n",
            "a/b/c.txt": "nested\n",
            "a-b/d.txt": "order\n",
            "bin/run.sh": ("exec", "#!/bin/sh\necho ran\n"),
            "link": ("link", "a.txt"),
            "dangling": ("link", "does/not/exist"),
            "empty": None,
            "with space.txt": "space\n",
            "big.bin": BIG,
        },
    )
    return root


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, bk_address: str, busybox: str
) -> dict[str, object]:
    """One build exported locally and one as tar (the second one fully cached)."""
    import asyncio

    base = tmp_path_factory.mktemp("build")
    context = _context(base / "context", busybox)
    events: list[object] = []

    async def run() -> dict[str, object]:
        async with Client(bk_address) as bk:
            local = await bk.build(
                context, network="none", exports=[Export.local(base / "out")],
                progress=events.append,
            )
            tar = await bk.build(
                context, network="none", exports=[Export.tar(base / "out.tar")]
            )
        return {"local": local, "tar": tar}

    results = asyncio.run(run())
    return {"base": base, "context": context, "events": events, **results}


def test_local_export_matches_context_byte_for_byte(exported: dict[str, object]) -> None:
    base = exported["base"]
    assert isinstance(base, Path)
    source = snapshot(base / "context")
    received = snapshot(base / "out" / "ctx")
    assert received == source
    assert received["bin/run.sh"][1] == 0o755
    assert received["link"] == ("link", 0, "a.txt")
    assert received["empty"][0] == "dir"
    assert (base / "out" / "ran.txt").read_text() == "ran\n"


def test_tar_export_streams_the_filesystem(exported: dict[str, object]) -> None:
    base = exported["base"]
    assert isinstance(base, Path)
    with tarfile.open(base / "out.tar") as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers()}
        assert members["ctx/bin/run.sh"].mode & 0o777 == 0o755
        assert members["ctx/link"].issym() and members["ctx/link"].linkname == "a.txt"
        big = tar.extractfile(members["ctx/big.bin"])
        assert big is not None and big.read() == BIG
        assert "ran.txt" in members


def test_progress_events_and_stats(exported: dict[str, object]) -> None:
    events = exported["events"]
    assert isinstance(events, list)
    names = {e.name for e in events if isinstance(e, VertexEvent)}
    assert any("RUN /ctx/bin/run.sh" in n for n in names)
    states = {e.state for e in events if isinstance(e, VertexEvent)}
    assert {"started", "completed"} <= states
    logs = [e.line for e in events if getattr(e, "line", None) is not None]
    assert "built-ok" in logs
    local = exported["local"]
    stats = local.stats  # type: ignore[attr-defined]
    assert stats.file_bytes_sent >= len(BIG)
    assert stats.bytes_received > len(BIG)


async def test_ping_and_info(bk_address: str) -> None:
    async with Client(bk_address) as bk:
        workers = await bk.ping()
        assert workers and workers[0].platforms
        assert await bk.info() is None  # Docker 20.10 has no Info RPC
        records = await bk.disk_usage()
        assert all({"id", "size", "in_use", "description"} <= set(r) for r in records)
        await bk.wait_for_ready(timeout=5)


async def test_dockerfile_outside_context_target_args_labels(
    tmp_path: Path, bk_address: str, busybox: str, no_session_leaks: object
) -> None:
    make_tree(tmp_path / "ctx", {"data.txt": "data\n"})
    dockerfile = tmp_path / "build" / "app.Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text(
        f"FROM {busybox} AS first\nARG GREETING=unset\n"
        "RUN sleep 1.5 && echo $GREETING > /greeting\n"  # outlives the 1 s session health check
        f"FROM {busybox} AS second\nCOPY --from=first /greeting /g\nCOPY data.txt /d\n"
        "FROM second AS never\nRUN exit 3\n"
    )
    async with Client(bk_address) as bk:
        result = await bk.build(
            tmp_path / "ctx",
            dockerfile=dockerfile,
            target="second",
            build_args={"GREETING": "hi there"},
            labels={"org.wfe.test": "yes"},
            no_cache=True,
            network="none",
            exports=[Export.local(tmp_path / "out")],
        )
    assert (tmp_path / "out" / "g").read_text() == "hi there\n"
    assert (tmp_path / "out" / "d").read_text() == "data\n"
    assert result.digest is None


async def test_moby_export_gives_image_id(
    tmp_path: Path, bk_address: str, busybox: str, docker_daemon: DockerDaemon
) -> None:
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\nLABEL x=y\n"})
    async with Client(bk_address) as bk:
        result = await bk.build(
            tmp_path, labels={"org.wfe.label": "from-config"},
            exports=[Export.moby(["wfe-test/moby:1"])],
        )
    assert result.digest and result.digest.startswith("sha256:")
    assert result.config_digest == result.digest
    engine = DockerEngine(docker_daemon.socket, "test")
    status, image = await asyncio.wait_for(engine.get_json("/images/wfe-test/moby:1/json"), 10)
    assert status == 200
    assert image["Id"] == result.digest
    assert image["Config"]["Labels"] == {"x": "y", "org.wfe.label": "from-config"}


async def test_session_over_control_stream(
    tmp_path: Path, bk_address: str, busybox: str, no_session_leaks: object
) -> None:
    """The ``Control.Session`` pump (what standalone buildkitd uses), through Docker's /grpc."""
    make_tree(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {busybox}\nCOPY . /c\nRUN sleep 1.5 && echo slept\n", "x": "x\n"},
    )
    async with Client(bk_address) as bk:
        bk.transport.session_over_control = True
        await bk.build(
            tmp_path / "ctx", network="none", no_cache=True,
            exports=[Export.local(tmp_path / "out")],
        )
    assert (tmp_path / "out" / "c" / "x").read_text() == "x\n"


async def test_concurrent_builds_share_one_client(
    tmp_path: Path, bk_address: str, busybox: str, no_session_leaks: object
) -> None:
    contexts = []
    for name in ("one", "two", "three"):
        make_tree(tmp_path / name, {"Dockerfile": f"FROM {busybox}\nCOPY f /f\n", "f": name})
        contexts.append(tmp_path / name)
    async with Client(bk_address) as bk:
        await asyncio.gather(
            *(bk.build(c, exports=[Export.local(tmp_path / f"out-{c.name}")]) for c in contexts)
        )
    for c in contexts:
        assert (tmp_path / f"out-{c.name}" / "f").read_text() == c.name
