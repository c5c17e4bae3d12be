"""The session content store behind ``type=local`` cache (unit tests, in-process gRPC).

Calls are made the way BuildKit's content proxy makes them: containerd's content service with
the ``buildkit-attachable-store-id`` metadata selecting the directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from wfe_buildkit.cache_options import (
    CONTENT_SERVICE,
    STORE_ID_METADATA,
    WRITE_COMMIT,
    WRITE_STAT,
    WRITE_WRITE,
    content_messages,
    local_cache_digest,
    local_cache_service,
    local_cache_stores,
    parse_cache_list,
    update_local_cache_index,
)

M = content_messages()


def call(channel: grpc.aio.Channel, method: str, request: str, response: str, kind: str) -> Any:
    factory = getattr(channel, kind)
    return factory(
        f"/{CONTENT_SERVICE}/{method}",
        request_serializer=M[request].SerializeToString,
        response_deserializer=M[response].FromString,
    )


def md(store_id: str) -> list[tuple[str, str]]:
    return [(STORE_ID_METADATA, store_id)]


async def write_blob(
    channel: grpc.aio.Channel, store_id: str, data: bytes, *, expected: str | None = None,
    chunk: int = 5,
) -> list[Any]:
    """Write like containerd's content proxy (BuildKit's side): send one request, read its
    reply, then the next (STAT, WRITE..., COMMIT)."""
    digest = expected or "sha256:" + hashlib.sha256(data).hexdigest()
    write = call(channel, "Write", "WriteContentRequest", "WriteContentResponse", "stream_stream")
    stream = write(metadata=md(store_id))
    requests = [M["WriteContentRequest"](action=WRITE_STAT, ref="ref-1", total=len(data),
                                         expected=digest)]
    requests += [
        M["WriteContentRequest"](action=WRITE_WRITE, ref="ref-1", offset=offset,
                                 data=data[offset:offset + chunk])
        for offset in range(0, len(data), chunk)
    ]
    requests.append(M["WriteContentRequest"](action=WRITE_COMMIT, ref="ref-1",
                                             offset=len(data), total=len(data), expected=digest))
    replies = []
    for request in requests:
        await stream.write(request)
        reply = await stream.read()
        if reply is grpc.aio.EOF:
            await stream.wait_for_connection()
            break
        replies.append(reply)
    await stream.done_writing()
    if len(replies) < len(requests):
        await stream  # raises the call's error
    return replies


async def test_write_info_read(serve: Any, tmp_path: Path) -> None:
    exports = parse_cache_list([f"type=local,dest={tmp_path / 'cache'}"], "cache_to")
    stores = local_cache_stores((), exports)
    store_id = f"local:{tmp_path / 'cache'}"
    data = b"hello local cache, this is a blob"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    service = local_cache_service(stores)
    async with serve(service) as channel:
        replies = await write_blob(channel, store_id, data)
        assert replies[0].action == WRITE_STAT and replies[0].offset == 0
        assert replies[0].total == len(data)
        assert replies[-1].action == WRITE_COMMIT and replies[-1].digest == digest
        assert replies[-1].offset == len(data)
        blob = tmp_path / "cache" / "blobs" / "sha256" / digest.split(":")[1]
        assert blob.read_bytes() == data
        assert not any((tmp_path / "cache" / "ingest").iterdir())

        info = await call(channel, "Info", "InfoRequest", "InfoResponse", "unary_unary")(
            M["InfoRequest"](digest=digest), metadata=md(store_id))
        assert (info.info.digest, info.info.size) == (digest, len(data))

        read = call(channel, "Read", "ReadContentRequest", "ReadContentResponse", "unary_stream")
        chunks = [r async for r in read(M["ReadContentRequest"](digest=digest, offset=6, size=5),
                                        metadata=md(store_id))]
        assert b"".join(c.data for c in chunks) == data[6:11] and chunks[0].offset == 6
        whole = [r async for r in read(M["ReadContentRequest"](digest=digest),
                                       metadata=md(store_id))]
        assert b"".join(c.data for c in whole) == data

        # a known blob: ALREADY_EXISTS, which BuildKit treats as success
        with pytest.raises(grpc.aio.AioRpcError) as info_err:
            await write_blob(channel, store_id, data)
        assert info_err.value.code() == grpc.StatusCode.ALREADY_EXISTS

        # wrong digest: refused, nothing stored
        with pytest.raises(grpc.aio.AioRpcError) as info_err:
            await write_blob(channel, store_id, b"other bytes", expected="sha256:" + "0" * 64)
        assert info_err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "unexpected commit digest" in (info_err.value.details() or "")

        missing = "sha256:" + "1" * 64
        with pytest.raises(grpc.aio.AioRpcError) as info_err:
            await call(channel, "Info", "InfoRequest", "InfoResponse", "unary_unary")(
                M["InfoRequest"](digest=missing), metadata=md(store_id))
        assert info_err.value.code() == grpc.StatusCode.NOT_FOUND

        with pytest.raises(grpc.aio.AioRpcError) as info_err:
            await call(channel, "Info", "InfoRequest", "InfoResponse", "unary_unary")(
                M["InfoRequest"](digest=digest), metadata=md("local:/elsewhere"))
        assert info_err.value.code() == grpc.StatusCode.NOT_FOUND
        assert "unknown local cache store" in (info_err.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as info_err:
            await call(channel, "Info", "InfoRequest", "InfoResponse", "unary_unary")(
                M["InfoRequest"](digest=digest))
        assert info_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert service.servicer.blobs_written == 1


def test_messages_are_wire_compatible_with_containerd() -> None:
    content_pb2 = pytest.importorskip("wfe_containerd._pb.services.content_pb2")
    ours = M["WriteContentRequest"](action=WRITE_COMMIT, ref="r", total=3, expected="e",
                                    offset=1, data=b"x", labels={"k": "v"})
    theirs = content_pb2.WriteContentRequest.FromString(ours.SerializeToString())
    assert (theirs.action, theirs.ref, theirs.total, theirs.expected, theirs.offset,
            theirs.data, dict(theirs.labels)) == (2, "r", 3, "e", 1, b"x", {"k": "v"})
    info = content_pb2.InfoResponse(info=content_pb2.Info(digest="d", size=9))
    assert M["InfoResponse"].FromString(info.SerializeToString()).info.size == 9


def test_update_local_cache_index(tmp_path: Path) -> None:
    exports = parse_cache_list(
        [f"type=local,dest={tmp_path / 'a'}", f"type=local,dest={tmp_path / 'b'},tag=v2",
         "type=inline"], "cache_to")
    first = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": "sha256:" + "a" * 64, "size": 10}
    second = dict(first, digest="sha256:" + "b" * 64)
    assert update_local_cache_index(exports, {}) == []
    assert update_local_cache_index(exports, {"cache.manifest": json.dumps(first)}) == [
        tmp_path / "a", tmp_path / "b"]
    update_local_cache_index(exports, {"cache.manifest": json.dumps(second)})
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert len(index["manifests"]) == 1  # the tag moved, no duplicate
    assert local_cache_digest(tmp_path / "a") == second["digest"]
    assert local_cache_digest(tmp_path / "b", "v2") == second["digest"]
    assert (tmp_path / "a" / "oci-layout").exists()


async def test_one_writer_per_ref(serve: Any, tmp_path: Path) -> None:
    store_id = f"local:{tmp_path}"
    service = local_cache_service({tmp_path: store_id})
    async with serve(service) as channel:
        write = call(channel, "Write", "WriteContentRequest", "WriteContentResponse",
                     "stream_stream")
        first = write(metadata=md(store_id))
        await first.write(M["WriteContentRequest"](action=WRITE_STAT, ref="same"))
        assert (await first.read()).action == WRITE_STAT
        second = write(metadata=md(store_id))
        await second.write(M["WriteContentRequest"](action=WRITE_STAT, ref="same"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await second.read()
            await second
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "ref same locked" in (info.value.details() or "")
        first.cancel()
