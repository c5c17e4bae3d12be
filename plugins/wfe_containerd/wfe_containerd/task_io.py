"""Task stdio over FIFOs: created and opened before ``Tasks.Create``, read live until EOF.

The runc shim opens each FIFO for writing inside ``Tasks.Create`` and blocks until a reader
exists, so both read ends are opened non-blocking first; reading starts only after Create returns
(a FIFO that never had a writer reads as EOF). Both streams are drained continuously through the
event loop's reader callbacks, because a full pipe blocks the container. Everything lives in one
private directory, named with our pid so ``wfe gc`` can tell whose it is; :meth:`TaskIO.close`
removes it.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

DIR_PREFIX = "wfe-containerd-"
READ_BYTES = 64 * 1024

OutputCallback = Callable[[str, str], None]
"""Called with ``("stdout" | "stderr", text)`` for every decoded chunk."""


def io_dir_prefix(pid: int | None = None) -> str:
    """The FIFO directory prefix of ``pid`` (default: us): ``wfe gc`` reads the pid back from the
    name to tell a dead process's directories from a live one's."""
    return f"{DIR_PREFIX}{pid if pid is not None else os.getpid()}-"


class TaskIO:
    """The FIFO pair (and the ``$WFE_OUTPUT`` file) of one task."""

    def __init__(self, container_id: str, *, base_dir: str | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=io_dir_prefix(), dir=base_dir))
        self.stdout = str(self.dir / "stdout")
        self.stderr = str(self.dir / "stderr")
        self.output_file = self.dir / "output"
        self._fds: dict[str, int] = {}
        try:
            for name, path in (("stdout", self.stdout), ("stderr", self.stderr)):
                os.mkfifo(path, 0o600)
                self._fds[name] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self.output_file.touch(mode=0o666)
            self.output_file.chmod(0o666)
        except BaseException:
            self.close()
            raise

    def start(self, on_output: OutputCallback) -> asyncio.Future[None]:
        """Start forwarding output; the future completes when both streams hit EOF."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        open_streams = set(self._fds)

        def reader(name: str, fd: int) -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

            def on_readable() -> None:
                while True:
                    try:
                        data = os.read(fd, READ_BYTES)
                    except BlockingIOError:
                        return
                    except OSError:
                        data = b""
                    if not data:
                        loop.remove_reader(fd)
                        tail = decoder.decode(b"", final=True)
                        if tail:
                            on_output(name, tail)
                        open_streams.discard(name)
                        if not open_streams and not done.done():
                            done.set_result(None)
                        return
                    text = decoder.decode(data)
                    if text:
                        on_output(name, text)

            loop.add_reader(fd, on_readable)

        for name, fd in self._fds.items():
            reader(name, fd)
        return done

    def close(self) -> None:
        """Stop reading, close the fds and remove the directory. Safe to call twice."""
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for fd in self._fds.values():
                loop.remove_reader(fd)
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
