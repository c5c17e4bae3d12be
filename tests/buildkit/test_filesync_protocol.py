"""The DiffCopy handlers against a scripted peer (a fake grpc.aio servicer context).

Sender: STATs in order, DATA only for requested ids in bounded chunks, FIN handshake.
Receiver: writes below the destination only, never through a symlink, refuses unclean paths.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import grpc
import pytest
from wfe_buildkit._pb import filesync_pb2, fsutil_pb2
from wfe_buildkit.errors import ExportError
from wfe_buildkit.filesync import CHUNK, TransferStats, receive_file, receive_tree, send_tree
from wfe_buildkit.fstree import MODE_DIR, MODE_SYMLINK, WalkFilter

from tests.buildkit.trees import make_tree

P = fsutil_pb2.Packet


class FakeContext:
    """Reads scripted incoming messages (a callable may produce them lazily), records writes."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Any] = asyncio.Queue()
        self.written: list[Any] = []
        self.on_write: Any = None

    async def read(self) -> Any:
        return await self.incoming.get()

    async def write(self, message: Any) -> None:
        self.written.append(message)
        if self.on_write is not None:
            self.on_write(message)


async def test_sender_answers_requests_and_fin(tmp_path: Path) -> None:
    big = os.urandom(CHUNK * 2 + 10)
    make_tree(tmp_path, {"a.txt": "A", "d/big.bin": big, "l": ("link", "a.txt")})
    ctx = FakeContext()
    stats: list[Any] = []

    def peer(message: Any) -> None:  # the daemon: request every file once the list is complete
        stats.append(message)
        if message.type == P.PACKET_STAT and not message.HasField("stat"):
            for index, m in enumerate(s for s in stats if s.HasField("stat")):
                if not m.stat.mode & (MODE_DIR | MODE_SYMLINK):
                    ctx.incoming.put_nowait(P(type=P.PACKET_REQ, ID=index))
        done = [m for m in stats if m.type == P.PACKET_DATA and not m.data]
        if message.type == P.PACKET_DATA and not message.data and len(done) == 2:
            ctx.incoming.put_nowait(P(type=P.PACKET_FIN))

    ctx.on_write = peer
    counters = TransferStats()
    await asyncio.wait_for(send_tree(ctx, tmp_path, WalkFilter(), counters), 10)  # type: ignore[arg-type]
    paths = [m.stat.path for m in ctx.written if m.type == P.PACKET_STAT and m.HasField("stat")]
    assert paths == ["a.txt", "d", "d/big.bin", "l"]
    data = [m for m in ctx.written if m.type == P.PACKET_DATA and m.ID == 2]
    assert b"".join(m.data for m in data) == big
    assert max(len(m.data) for m in data) <= CHUNK and data[-1].data == b""
    assert ctx.written[-1].type == P.PACKET_FIN
    assert counters.files_sent == 2 and counters.file_bytes_sent == len(big) + 1


async def _receive(dest: Path, packets: list[Any], **kw: Any) -> FakeContext:
    ctx = FakeContext()
    for packet in packets:
        ctx.incoming.put_nowait(packet.SerializeToString())
    ctx.incoming.put_nowait(grpc.aio.EOF)
    await asyncio.wait_for(receive_tree(ctx, dest, TransferStats()), 10)  # type: ignore[arg-type]
    return ctx


def _stat(path: str, mode: int, **kw: Any) -> Any:
    return P(type=P.PACKET_STAT, stat=fsutil_pb2.Stat(path=path, mode=mode, **kw))


async def test_receiver_writes_tree(tmp_path: Path) -> None:
    packets = [
        _stat("bin", MODE_DIR | 0o755, modTime=10**18),
        _stat("bin/tool", 0o755, size=3, modTime=10**18),
        _stat("link", MODE_SYMLINK | 0o777, linkname="bin/tool"),
        P(type=P.PACKET_STAT),
        P(type=P.PACKET_DATA, ID=1, data=b"abc"),
        P(type=P.PACKET_DATA, ID=1),
        P(type=P.PACKET_FIN),
    ]
    ctx = await _receive(tmp_path / "out", packets)
    out = tmp_path / "out"
    assert (out / "bin" / "tool").read_bytes() == b"abc"
    assert (out / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert os.readlink(out / "link") == "bin/tool"
    assert (out / "bin").stat().st_mtime_ns == 10**18
    sent = [P.FromString(m) for m in ctx.written]
    assert [(m.type, m.ID) for m in sent] == [(P.PACKET_REQ, 1), (P.PACKET_FIN, 0)]


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b", "./a", "a//b"])
async def test_receiver_refuses_unclean_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ExportError, match="refusing export entry"):
        await _receive(tmp_path / "out", [_stat(bad, 0o644, size=1)])
    assert not (tmp_path / "escape").exists()


async def test_receiver_never_writes_through_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    packets = [
        _stat("evil", MODE_SYMLINK | 0o777, linkname=str(outside)),
        _stat("evil/owned", 0o644, size=1),
        P(type=P.PACKET_STAT),
        P(type=P.PACKET_DATA, ID=1, data=b"x"),
        P(type=P.PACKET_DATA, ID=1),
    ]
    with pytest.raises(ExportError, match="symlinks are never followed"):
        await _receive(tmp_path / "out", packets)
    assert list(outside.iterdir()) == []


async def test_receiver_replaces_existing_symlink_in_dest(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    target = tmp_path / "precious"
    target.write_text("keep me")
    (dest / "file").symlink_to(target)
    packets = [
        _stat("file", 0o644, size=3),
        P(type=P.PACKET_STAT),
        P(type=P.PACKET_DATA, ID=0, data=b"new"),
        P(type=P.PACKET_DATA, ID=0),
    ]
    await _receive(dest, packets)
    assert target.read_text() == "keep me"
    assert not (dest / "file").is_symlink() and (dest / "file").read_text() == "new"


async def test_receiver_refuses_data_for_unrequested_id(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unrequested file 7"):
        await _receive(tmp_path / "out", [P(type=P.PACKET_DATA, ID=7, data=b"x")])


async def test_receive_file_streams_bytes(tmp_path: Path) -> None:
    ctx = FakeContext()
    for chunk in (b"part1-", b"part2"):
        ctx.incoming.put_nowait(filesync_pb2.BytesMessage(data=chunk).SerializeToString())
    ctx.incoming.put_nowait(grpc.aio.EOF)
    await receive_file(ctx, tmp_path / "x" / "out.tar", TransferStats())  # type: ignore[arg-type]
    assert (tmp_path / "x" / "out.tar").read_bytes() == b"part1-part2"
