"""Both directions of fsutil's DiffCopy protocol, as grpc.aio handlers of the session server.

* :func:`send_tree` serves ``FileSync.DiffCopy``: the client is the *sender* of a local
  directory (build context, Dockerfile dir). It streams STAT packets while concurrently answering
  the daemon's REQ packets with DATA chunks, and ends with the FIN handshake.
* :func:`receive_tree` serves ``FileSend.DiffCopy`` for the ``local`` exporter: the daemon sends
  the tree and the client writes it below ``dest`` using directory file descriptors and
  ``O_NOFOLLOW``, so that nothing is ever written outside ``dest`` or through a symlink.
* :func:`receive_file` serves ``FileSend.DiffCopy`` for tar/oci/docker exporters: the payload is a
  stream of ``BytesMessage`` chunks written to one file until the daemon half-closes.

Memory stays bounded: file bytes are read in 1 MiB slices off the event loop and sent as
128 KiB DATA packets through a small queue (the v0.8 daemon accepts messages up to 4 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat as statmod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import grpc

from wfe_buildkit._pb import filesync_pb2, fsutil_pb2
from wfe_buildkit.errors import ExportError, SessionError
from wfe_buildkit.fstree import (
    Entry,
    WalkFilter,
    is_dir,
    is_regular,
    is_symlink,
    posix_permissions,
    walk,
)
from wfe_buildkit.patterns import go_clean

Packet = fsutil_pb2.Packet
STAT, REQ, DATA, FIN, ERR = (
    Packet.PACKET_STAT,
    Packet.PACKET_REQ,
    Packet.PACKET_DATA,
    Packet.PACKET_FIN,
    Packet.PACKET_ERR,
)
#: grpc.aio's end-of-stream marker for ``context.read()`` (absent from grpc-stubs).
EOF: Any = grpc.aio.EOF
CHUNK = 128 * 1024
READ_SLICE = 1024 * 1024
INLINE_READ = 64 * 1024
SEND_WORKERS = 4
WALK_BATCH = 256


@attrs.define
class TransferStats:
    """Counters of one session's traffic (for progress and the benchmark)."""

    bytes_sent: int = 0
    stats_sent: int = 0
    files_sent: int = 0
    file_bytes_sent: int = 0
    bytes_received: int = 0


def _stat_of(entry: Entry) -> fsutil_pb2.Stat:
    return fsutil_pb2.Stat(
        path=entry.path,
        mode=entry.mode,
        size=entry.size,
        modTime=entry.mtime_ns,
        linkname=entry.linkname,
    )


def _take(iterator: Iterator[Entry], n: int) -> list[Entry]:
    out: list[Entry] = []
    for entry in iterator:
        out.append(entry)
        if len(out) >= n:
            break
    return out


def _read_small(path: str) -> bytes | None:
    """A whole small file in one worker-thread hop (None if it cannot be opened)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(INLINE_READ + 1)
    except OSError:
        return None


def _read_slice(handle: Any, size: int) -> bytes:
    data: bytes = handle.read(size)
    return data


async def send_tree(
    context: grpc.aio.ServicerContext[Any, Any],
    root: Path,
    flt: WalkFilter,
    stats: TransferStats,
) -> None:
    """Serve one FileSync.DiffCopy call as the sender of ``root`` filtered by ``flt``."""
    lock = asyncio.Lock()
    requests: asyncio.Queue[int] = asyncio.Queue()
    files: dict[int, tuple[str, int]] = {}
    finished = asyncio.Event()
    failure: list[str] = []

    async def send(packet: Packet) -> None:
        # one write at a time on the stream; no queue in between (a hand-off per message
        # costs more than the write itself for the many small packets of a context)
        async with lock:
            await context.write(packet)
        stats.bytes_sent += packet.ByteSize()

    async def reader() -> None:
        try:
            while True:
                packet = await context.read()
                if packet is EOF:
                    break
                if packet.type == REQ:
                    requests.put_nowait(packet.ID)
                elif packet.type == FIN:
                    break
                elif packet.type == ERR:
                    failure.append(packet.data.decode("utf-8", "replace"))
                    break
        except grpc.aio.AioRpcError as exc:  # the daemon went away mid-transfer
            failure.append(exc.details() or exc.code().name)
        finally:
            finished.set()

    async def producer() -> None:
        iterator = walk(root, flt)
        index = 0
        while True:
            batch = await asyncio.to_thread(_take, iterator, WALK_BATCH)
            if not batch:
                break
            for entry in batch:
                if is_regular(entry.mode):
                    files[index] = (entry.source, entry.size)
                await send(Packet(type=STAT, stat=_stat_of(entry)))
                stats.stats_sent += 1
                index += 1
        await send(Packet(type=STAT))  # end of list: a STAT without a stat field

    async def data_worker() -> None:
        while True:
            ident = await requests.get()
            item = files.pop(ident, None)
            if item is None:
                await send(Packet(type=ERR, data=f"invalid file id {ident}".encode()))
                continue
            source, size = item
            if size <= INLINE_READ:
                # small files are read on the loop: a worker-thread hop per file costs more
                # (GIL hand-offs) than the read itself, and never blocks the loop for long
                data = _read_small(source)
                if data is not None and len(data) <= INLINE_READ:
                    for offset in range(0, len(data), CHUNK):
                        chunk = data[offset : offset + CHUNK]
                        await send(Packet(type=DATA, ID=ident, data=chunk))
                        stats.file_bytes_sent += len(chunk)
                    await send(Packet(type=DATA, ID=ident))
                    stats.files_sent += 1
                    continue
                if data is None:
                    await send(Packet(type=DATA, ID=ident))
                    continue
            try:
                handle = await asyncio.to_thread(open, source, "rb")
            except OSError:
                await send(Packet(type=DATA, ID=ident))  # unreadable: empty, like Go
                continue
            try:
                while True:
                    block = await asyncio.to_thread(_read_slice, handle, READ_SLICE)
                    if not block:
                        break
                    for offset in range(0, len(block), CHUNK):
                        chunk = block[offset : offset + CHUNK]
                        await send(Packet(type=DATA, ID=ident, data=chunk))
                        stats.file_bytes_sent += len(chunk)
            finally:
                handle.close()
            await send(Packet(type=DATA, ID=ident))
            stats.files_sent += 1

    read_task = asyncio.ensure_future(reader())
    helpers = [asyncio.ensure_future(producer())]
    helpers += [asyncio.ensure_future(data_worker()) for _ in range(SEND_WORKERS)]
    try:
        waiter = asyncio.ensure_future(finished.wait())
        done, _ = await asyncio.wait([waiter, helpers[0]], return_when=asyncio.FIRST_COMPLETED)
        if helpers[0] in done and helpers[0].exception() is not None:
            exc = helpers[0].exception()
            await send(Packet(type=ERR, data=f"walking {root}: {exc}".encode()))
            return
        await waiter
        # after FIN every requested file has arrived: the helpers are idle, stop them
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if not failure:
            await send(Packet(type=FIN))
    finally:
        for task in [*helpers, read_task]:
            task.cancel()
        await asyncio.gather(*helpers, read_task, return_exceptions=True)
    if failure:
        raise SessionError(f"the daemon aborted the upload of {root}: {failure[0]}")


# ---------------------------------------------------------------------------------------------
# receiving


def _check_rel(path: str) -> str:
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        raise ExportError(f"refusing export entry with unsafe path {path!r}")
    if go_clean(path) != path or path == "." or path.split("/")[0] == "..":
        raise ExportError(f"refusing export entry with unclean path {path!r}")
    return path


class _Tree:
    """Creates entries below ``dest`` through directory fds, never following symlinks."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        dest.mkdir(parents=True, exist_ok=True)
        self.root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dirs: dict[str, int] = {"": self.root_fd}
        self.dir_times: list[tuple[str, int]] = []

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()

    def parent(self, rel: str) -> tuple[int, str]:
        head, _, name = rel.rpartition("/")
        fd = self.dirs.get(head)
        if fd is None:
            fd = self._open_dir(head)
        return fd, name

    def _open_dir(self, rel: str) -> int:
        parent_fd, name = self.parent(rel)
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
            )
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ExportError(
                    f"refusing to write below {self.dest / rel}: it is not a directory "
                    "(symlinks are never followed)"
                ) from None
            raise
        self.dirs[rel] = fd
        return fd

    def _clear(self, fd: int, name: str, want_dir: bool) -> None:
        try:
            st = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            return
        if statmod.S_ISDIR(st.st_mode):
            if want_dir:
                return
            raise ExportError(f"cannot replace directory {name!r} in the export destination")
        os.unlink(name, dir_fd=fd)

    def mkdir(self, rel: str, mode: int, mtime: int) -> None:
        fd, name = self.parent(rel)
        self._clear(fd, name, want_dir=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=fd)
        dfd = self._open_dir(rel)
        os.fchmod(dfd, posix_permissions(mode))
        self.dir_times.append((rel, mtime))

    def symlink(self, rel: str, target: str, mtime: int) -> None:
        fd, name = self.parent(rel)
        self._clear(fd, name, want_dir=False)
        os.symlink(target, name, dir_fd=fd)
        os.utime(name, ns=(mtime, mtime), dir_fd=fd, follow_symlinks=False)

    def hardlink(self, rel: str, target: str) -> None:
        _check_rel(target)
        tfd, tname = self.parent(target)
        fd, name = self.parent(rel)
        self._clear(fd, name, want_dir=False)
        os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)

    def open_file(self, rel: str) -> int:
        fd, name = self.parent(rel)
        self._clear(fd, name, want_dir=False)
        return os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=fd,
        )

    def finish_dirs(self) -> None:
        for rel, mtime in reversed(self.dir_times):
            fd, name = self.parent(rel)
            os.utime(name, ns=(mtime, mtime), dir_fd=fd, follow_symlinks=False)


@attrs.define
class _Pending:
    path: str
    mode: int
    mtime: int
    fd: int = -1


async def receive_tree(
    context: grpc.aio.ServicerContext[Any, Any], dest: Path, stats: TransferStats
) -> None:
    """Serve one FileSend.DiffCopy call of the ``local`` exporter, writing below ``dest``."""
    tree = _Tree(dest)
    pending: dict[int, _Pending] = {}
    index = 0
    stats_done = False
    fin_sent = False
    last_path = ""
    try:
        while True:
            raw = await context.read()
            if raw is EOF:
                break
            stats.bytes_received += len(raw)
            packet = Packet.FromString(raw)
            if packet.type == STAT:
                if not packet.HasField("stat"):
                    stats_done = True
                else:
                    st = packet.stat
                    rel = _check_rel(st.path)
                    if last_path and not _ordered(last_path, rel):
                        raise ExportError(f"export entries out of order: {last_path!r} {rel!r}")
                    last_path = rel
                    await asyncio.to_thread(_apply_stat, tree, index, st, pending)
                    if index in pending:
                        await context.write(Packet(type=REQ, ID=index).SerializeToString())
                    index += 1
            elif packet.type == DATA:
                item = pending.get(packet.ID)
                if item is None:
                    raise ExportError(f"the daemon sent data for unrequested file {packet.ID}")
                if item.fd < 0:  # opened on its first DATA packet (an empty file has one)
                    item.fd = tree.open_file(item.path)
                if packet.data:
                    await asyncio.to_thread(_write_all, item.fd, packet.data)
                else:  # an empty DATA packet ends the file
                    _finish_file(item)
                    del pending[packet.ID]
            elif packet.type == FIN:
                break
            elif packet.type == ERR:
                raise ExportError(f"the daemon failed the export: {packet.data.decode()}")
            if stats_done and not pending and not fin_sent:
                await context.write(Packet(type=FIN).SerializeToString())
                fin_sent = True
        tree.finish_dirs()
    finally:
        for item in pending.values():
            if item.fd >= 0:
                os.close(item.fd)
        tree.close()


def _ordered(previous: str, current: str) -> bool:
    # fsutil order: compare path components; "/" sorts before every other byte
    a = previous.encode().replace(b"/", b"\x00")
    b = current.encode().replace(b"/", b"\x00")
    return a < b


def _apply_stat(tree: _Tree, index: int, st: Any, pending: dict[int, _Pending]) -> None:
    mode = int(st.mode)
    if is_dir(mode):
        tree.mkdir(st.path, mode, st.modTime)
    elif is_symlink(mode):
        tree.symlink(st.path, st.linkname, st.modTime)
    elif is_regular(mode):
        if st.linkname:
            tree.hardlink(st.path, st.linkname)
        else:
            pending[index] = _Pending(st.path, mode, st.modTime)
    # devices, fifos and sockets are not recreated by an unprivileged-style export


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _finish_file(item: _Pending) -> None:
    os.fchmod(item.fd, posix_permissions(item.mode))
    os.utime(item.fd, ns=(item.mtime, item.mtime))
    os.close(item.fd)
    item.fd = -1


async def receive_file(
    context: grpc.aio.ServicerContext[Any, Any], dest: Path, stats: TransferStats
) -> None:
    """Serve one FileSend.DiffCopy call of a tar/oci/docker exporter into the file ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(
            dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
    except OSError as exc:
        raise ExportError(f"cannot write the export to {dest}: {exc.strerror}") from None
    try:
        while True:
            raw = await context.read()
            if raw is EOF:
                break
            data = filesync_pb2.BytesMessage.FromString(raw).data
            stats.bytes_received += len(data)
            await asyncio.to_thread(_write_all, fd, data)
    finally:
        os.close(fd)


__all__ = ["TransferStats", "receive_file", "receive_tree", "send_tree"]
