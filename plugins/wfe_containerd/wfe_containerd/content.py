"""Reading and writing containerd's content store.

``Content.Write`` is a lock-step bidirectional stream: one response per request. An ingest is
opened with STAT under a stable ref (so an interrupted download resumes where the daemon's ingest
stopped), fed in 1 MiB chunks and committed with the expected digest, which the daemon verifies.
A ref locked by another writer (UNAVAILABLE) is retried with backoff; a blob that exists already
(ALREADY_EXISTS) is success, and then only its labels are updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, Callable, Mapping

import grpc

from wfe_containerd._pb.services import content_pb2, leases_pb2
from wfe_containerd.connection import Connection, raise_if_cancel_lost
from wfe_containerd.errors import AlreadyExistsError, NotFoundError, PullError, UnavailableError

CHUNK_BYTES = 1024 * 1024
LOCKED_REF_PATIENCE = 60.0

ChunkSource = Callable[[int], AsyncGenerator[bytes, None]]
"""Given the offset the daemon already has, yields the rest of the blob in chunks."""


async def read_blob(conn: Connection, digest: str, *, limit: int = 64 * 1024 * 1024) -> bytes:
    """A whole (small) blob from the content store."""
    parts: list[bytes] = []
    total = 0
    request = content_pb2.ReadContentRequest(digest=digest)
    async with contextlib.aclosing(conn.stream(conn.content.Read, request)) as messages:
        async for message in messages:
            parts.append(message.data)
            total += len(message.data)
            if total > limit:
                raise PullError(f"blob {digest} is larger than {limit} bytes")
    return b"".join(parts)


async def iter_blob(conn: Connection, digest: str) -> AsyncGenerator[bytes, None]:
    """A blob from the content store, chunk by chunk."""
    request = content_pb2.ReadContentRequest(digest=digest)
    async with contextlib.aclosing(conn.stream(conn.content.Read, request)) as messages:
        async for message in messages:
            yield message.data


async def exists(conn: Connection, digest: str) -> bool:
    try:
        await conn.call(conn.content.Info, content_pb2.InfoRequest(digest=digest))
    except NotFoundError:
        return False
    return True


async def update_labels(
    conn: Connection, digest: str, labels: Mapping[str, str], lease: str | None = None
) -> None:
    """Set ``labels`` on a committed blob, leaving its other labels alone."""
    if not labels:
        return
    info = content_pb2.Info(digest=digest, labels=dict(labels))
    request = content_pb2.UpdateRequest(info=info)
    request.update_mask.paths.extend(f"labels.{key}" for key in labels)
    await conn.call(conn.content.Update, request, lease=lease)


async def write_blob(
    conn: Connection,
    *,
    ref: str,
    digest: str,
    size: int,
    source: ChunkSource,
    labels: Mapping[str, str],
    lease: str | None,
    on_progress: Callable[[int], None] | None = None,
) -> bool:
    """Ingest one blob; returns False when it existed already (labels then updated)."""
    if lease:
        # An existing blob is pinned to the lease first, so it cannot be collected meanwhile.
        await conn.call(
            conn.leases.AddResource,
            leases_pb2.AddResourceRequest(
                id=lease, resource=leases_pb2.Resource(id=digest, type="content")
            ),
        )
    delay = 0.05
    waited = 0.0
    while True:
        try:
            written = await _write_once(conn, ref, digest, size, source, labels, lease, on_progress)
        except AlreadyExistsError:
            await update_labels(conn, digest, labels, lease)
            return False
        except UnavailableError:
            # Another writer holds the ref (a concurrent pull of the same image): wait for it,
            # but not forever.
            waited += delay
            if waited > LOCKED_REF_PATIENCE:
                raise PullError(
                    f"content ingest {ref!r} stayed locked by another writer for "
                    f"{LOCKED_REF_PATIENCE:g} s; retry, or abort it with "
                    f"`ctr -n {conn.namespace} content active` / `content rm`"
                ) from None
            await asyncio.sleep(delay + random.random() * delay)
            delay = min(delay * 2, 1.0)
            continue
        return written


async def _write_once(
    conn: Connection,
    ref: str,
    digest: str,
    size: int,
    source: ChunkSource,
    labels: Mapping[str, str],
    lease: str | None,
    on_progress: Callable[[int], None] | None,
) -> bool:
    call = conn.content.Write(metadata=conn.metadata(lease))
    task = asyncio.current_task()
    try:

        async def exchange(
            request: content_pb2.WriteContentRequest,
        ) -> content_pb2.WriteContentResponse:
            before = task.cancelling() if task is not None else 0
            await call.write(request)
            response = await call.read()
            raise_if_cancel_lost(task, before)
            if response is grpc.aio.EOF:
                raise PullError(f"content store closed the write stream for {digest}")
            return response  # type: ignore[no-any-return]

        status = await exchange(
            content_pb2.WriteContentRequest(
                action=content_pb2.STAT, ref=ref, total=size, expected=digest
            )
        )
        offset = status.offset
        if offset > size:
            offset = 0
        if on_progress and offset:
            on_progress(offset)
        if offset < size:
            # Closed explicitly: a failed exchange must not leave the source's download open
            # until the abandoned generator happens to be collected.
            async with contextlib.aclosing(source(offset)) as chunks:
                async for chunk in chunks:
                    response = await exchange(
                        content_pb2.WriteContentRequest(
                            action=content_pb2.WRITE, offset=offset, data=chunk
                        )
                    )
                    offset = response.offset
                    if on_progress:
                        on_progress(offset)
        if offset != size:
            raise PullError(f"download of {digest} ended at {offset} of {size} bytes")
        await exchange(
            content_pb2.WriteContentRequest(
                action=content_pb2.COMMIT,
                offset=offset,
                total=size,
                expected=digest,
                labels=dict(labels),
            )
        )
        await call.done_writing()
        return True
    except grpc.RpcError as exc:
        raise conn.error(exc, conn.content.Write) from None
    finally:
        call.cancel()
