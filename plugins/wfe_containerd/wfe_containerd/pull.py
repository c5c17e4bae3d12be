"""Pulling an image into containerd from the client side, as containerd 1.6's Go client does.

Resolve the reference at the registry, fetch the index (if any), the platform's manifest, the
config and the layers into the content store under a lease with the GC labels containerd expects,
unpack each layer with ``Diff.Apply`` into the snapshotter by chain ID, then create or update the
image record. Layers download in parallel and unpack in order as soon as each one is in. No
pre-pull is needed and no daemon-side transfer service is used, so this works on 1.6 and with
plain-http registries.

:func:`load_image` is the other half: what an already pulled image looks like, read back from the
content store, so ``pull: if-not-present`` costs a few small reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path

import attrs

from wfe_containerd import credentials as creds_mod
from wfe_containerd._pb.services import diff_pb2, images_pb2, snapshots_pb2
from wfe_containerd._pb.types import descriptor_pb2
from wfe_containerd.connection import CLEANUP_TIMEOUT, Connection
from wfe_containerd.content import CHUNK_BYTES, ChunkSource, read_blob, update_labels, write_blob
from wfe_containerd.credentials import Credentials
from wfe_containerd.errors import (
    AlreadyExistsError,
    ContainerdError,
    ImageNotFoundError,
    NotFoundError,
    PullError,
)
from wfe_containerd.leases import add_resource, create_lease, delete_lease
from wfe_containerd.oci import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MEDIA_SCHEMA1,
    Descriptor,
    ImageConfig,
    Platform,
    chain_ids,
    host_platform,
    parse_index,
    parse_manifest,
    select_manifest,
)
from wfe_containerd.reference import Reference, parse_reference
from wfe_containerd.registry import BlobStream, RegistryClient, is_loopback
from wfe_containerd.shield import finish_shielded, settle_then

DEFAULT_SNAPSHOTTER = "overlayfs"
PARALLEL_DOWNLOADS = 4


@attrs.frozen
class PullProgress:
    """Progress of one blob of a pull: ``status`` is downloading, exists, done or unpacked."""

    image: str
    digest: str
    media_type: str
    current: int
    total: int
    status: str


ProgressCallback = Callable[[PullProgress], None]


@attrs.frozen
class Image:
    """An image in containerd's store, with what running it needs."""

    name: str
    target: Descriptor
    manifest: Descriptor
    config_digest: str
    config: ImageConfig
    layers: tuple[Descriptor, ...]
    chain_id: str
    """Chain ID of the top layer: the parent snapshot of a container's rootfs."""


def _distribution_label(ref: Reference) -> dict[str, str]:
    """The label containerd's own pull puts on blobs: where they came from (host and repository),
    so that a later push to that registry can mount them instead of uploading."""
    host = ref.domain.split(":")[0] if not ref.domain.startswith("[") else ref.domain
    return {f"containerd.io/distribution.source.{host}": ref.path}


def _registry_source(registry: RegistryClient, repo: str, desc: Descriptor) -> ChunkSource:
    async def chunks(offset: int) -> AsyncGenerator[bytes, None]:
        opening = asyncio.ensure_future(asyncio.to_thread(registry.open_blob, repo, desc, offset))
        try:
            stream = await asyncio.shield(opening)
        except BaseException:
            # Cancelled while the worker thread was still connecting: it will open the stream
            # anyway, so close it then (else its HTTP connection stays open until collected).
            opening.add_done_callback(_close_opened_stream)
            raise
        pending: asyncio.Future[bytes] | None = None
        try:
            pending = asyncio.ensure_future(asyncio.to_thread(stream.read, CHUNK_BYTES))
            while True:
                chunk = await pending
                pending = None
                if not chunk:
                    return
                # Read the next chunk while this one travels to the daemon.
                pending = asyncio.ensure_future(asyncio.to_thread(stream.read, CHUNK_BYTES))
                yield chunk
        finally:
            if pending is not None:
                with contextlib.suppress(BaseException):
                    await pending
            await asyncio.to_thread(stream.close)

    return chunks


def _close_opened_stream(opening: asyncio.Future[BlobStream]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _bytes_source(data: bytes) -> ChunkSource:
    async def chunks(offset: int) -> AsyncGenerator[bytes, None]:
        for start in range(offset, len(data), CHUNK_BYTES):
            yield data[start : start + CHUNK_BYTES]

    return chunks


class _Puller:
    """One pull of one reference. Everything it writes goes under ``lease``, so that content of a
    pull that fails or is cancelled half-way is left to containerd's GC, not kept forever."""

    def __init__(
        self,
        conn: Connection,
        ref: Reference,
        registry: RegistryClient,
        *,
        snapshotter: str,
        platform: Platform,
        lease: str,
        progress: ProgressCallback | None,
    ) -> None:
        self.conn = conn
        self.ref = ref
        self.registry = registry
        self.snapshotter = snapshotter
        self.platform = platform
        self.lease = lease
        self.progress = progress
        self.source_labels = _distribution_label(ref)

    def _report(self, desc: Descriptor, current: int, status: str) -> None:
        if self.progress:
            self.progress(
                PullProgress(
                    str(self.ref), desc.digest, desc.media_type, current, desc.size, status
                )
            )

    async def _store_small(
        self, kind: str, desc: Descriptor, data: bytes, labels: Mapping[str, str]
    ) -> None:
        await write_blob(
            self.conn,
            ref=f"{kind}-{desc.digest}",
            digest=desc.digest,
            size=desc.size,
            source=_bytes_source(data),
            labels={**self.source_labels, **labels},
            lease=self.lease,
        )

    async def _fetch_layer(self, desc: Descriptor, gate: asyncio.Semaphore) -> None:
        async with gate:
            self._report(desc, 0, "downloading")
            written = await write_blob(
                self.conn,
                ref=f"layer-{desc.digest}",
                digest=desc.digest,
                size=desc.size,
                source=_registry_source(self.registry, self.ref.path, desc),
                labels=self.source_labels,
                lease=self.lease,
                on_progress=lambda n: self._report(desc, n, "downloading"),
            )
            self._report(desc, desc.size, "done" if written else "exists")

    async def run(self) -> Image:
        ref = self.ref
        top, manifest_desc, manifest_raw = await self._fetch_manifest()
        config_desc, layers = parse_manifest(manifest_raw, f"manifest of {ref}")
        config_raw = await asyncio.to_thread(self.registry.fetch_blob_bytes, ref.path, config_desc)
        config = ImageConfig.from_json(config_raw)
        if len(config.diff_ids) != len(layers):
            raise PullError(
                f"{ref}: the manifest lists {len(layers)} layers but the config has "
                f"{len(config.diff_ids)} diff_ids"
            )
        labels = {"containerd.io/gc.ref.content.config": config_desc.digest}
        labels.update(
            {f"containerd.io/gc.ref.content.l.{i}": layer.digest for i, layer in enumerate(layers)}
        )
        await self._store_small("manifest", manifest_desc, manifest_raw, labels)
        await self._store_small("config", config_desc, config_raw, {})
        chain = chain_ids(config.diff_ids)
        await self._fetch_and_unpack(layers, config.diff_ids, chain)
        top_chain = chain[-1] if chain else ""
        if top_chain:
            await update_labels(
                self.conn,
                config_desc.digest,
                {f"containerd.io/gc.ref.snapshot.{self.snapshotter}": top_chain},
                self.lease,
            )
        await self._save_record(top)
        return Image(
            str(ref), top, manifest_desc, config_desc.digest, config, tuple(layers), top_chain
        )

    async def _fetch_manifest(self) -> tuple[Descriptor, Descriptor, bytes]:
        """Resolve the reference; returns what it points at, and the platform's manifest (the
        same descriptor unless it is an index, which is stored on the way) with its bytes."""
        ref, reg = self.ref, self.registry
        top = await asyncio.to_thread(reg.resolve, ref.path, ref.object)
        if top.media_type in MEDIA_SCHEMA1:
            raise PullError(
                f"{ref} is a Docker schema 1 image, which is not supported; "
                "push it again with a current client"
            )
        raw = await asyncio.to_thread(reg.fetch_manifest, ref.path, top)
        if top.media_type in MANIFEST_TYPES:
            return top, top, raw
        if top.media_type not in INDEX_TYPES:
            raise PullError(f"{ref} resolved to unsupported media type {top.media_type!r}")
        children = parse_index(raw, f"index of {ref}")
        chosen = select_manifest(children, self.platform)
        if chosen is None:
            offered = ", ".join(str(c.platform) for c in children if c.platform) or "none"
            raise PullError(
                f"{ref} has no image for platform {self.platform} (it offers: {offered})"
            )
        labels = {f"containerd.io/gc.ref.content.m.{i}": c.digest for i, c in enumerate(children)}
        await self._store_small("index", top, raw, labels)
        return top, chosen, await asyncio.to_thread(reg.fetch_manifest, ref.path, chosen)

    async def _fetch_and_unpack(
        self, layers: Sequence[Descriptor], diff_ids: Sequence[str], chain: Sequence[str]
    ) -> None:
        """Download up to PARALLEL_DOWNLOADS layers at once; unpack each, in order, as soon as it
        and those below it are in. Downloads still running on failure are cancelled."""
        gate = asyncio.Semaphore(PARALLEL_DOWNLOADS)
        fetches = [asyncio.ensure_future(self._fetch_layer(layer, gate)) for layer in layers]
        try:
            for index, layer in enumerate(layers):
                await fetches[index]
                await self._unpack(index, layer, diff_ids[index], chain)
        finally:
            for task in fetches:
                task.cancel()
            await asyncio.gather(*fetches, return_exceptions=True)

    async def _unpack(
        self, index: int, layer: Descriptor, diff_id: str, chain: Sequence[str]
    ) -> None:
        conn, sn = self.conn, self.snapshotter
        parent = chain[index - 1] if index else ""
        labels = {"containerd.io/snapshot.ref": chain[index]}
        while True:
            # Pin the snapshot to our lease before looking: one left by another (maybe cancelled)
            # pull could otherwise be collected between our check and its use as a parent.
            await add_resource(conn, self.lease, f"snapshots/{sn}", chain[index])
            if await snapshot_exists(conn, sn, chain[index]):
                break
            key = f"extract-{time.time_ns()}-{secrets.token_hex(4)} {chain[index]}"
            preparing = asyncio.ensure_future(
                conn.call(
                    conn.snapshots.Prepare,
                    snapshots_pb2.PrepareSnapshotRequest(
                        snapshotter=sn, key=key, parent=parent, labels=labels
                    ),
                    lease=self.lease,
                )
            )
            try:
                prepared = await asyncio.shield(preparing)
            except AlreadyExistsError:
                continue
            except BaseException:
                # Cancelled while Prepare was in flight: let it land, then remove what it made.
                await finish_shielded(settle_then(preparing, _remove_snapshot(conn, sn, key)))
                raise
            try:
                self._report(layer, layer.size, "unpacking")
                applied = await conn.call(
                    conn.diff.Apply,
                    diff_pb2.ApplyRequest(
                        diff=descriptor_pb2.Descriptor(
                            media_type=layer.media_type, digest=layer.digest, size=layer.size
                        ),
                        mounts=prepared.mounts,
                    ),
                    lease=self.lease,
                )
                if applied.applied.digest != diff_id:
                    raise PullError(
                        f"layer {layer.digest} of {self.ref} unpacked to "
                        f"{applied.applied.digest}, but the config says {diff_id}"
                    )
                try:
                    await conn.call(
                        conn.snapshots.Commit,
                        snapshots_pb2.CommitSnapshotRequest(
                            snapshotter=sn, name=chain[index], key=key, labels=labels
                        ),
                        lease=self.lease,
                    )
                except AlreadyExistsError:
                    await _remove_snapshot(conn, sn, key)
            except BaseException:
                await finish_shielded(_remove_snapshot(conn, sn, key))
                raise
            break
        await update_labels(conn, layer.digest, {"containerd.io/uncompressed": diff_id}, self.lease)
        self._report(layer, layer.size, "unpacked")

    async def _save_record(self, target: Descriptor) -> None:
        image = images_pb2.Image(
            name=str(self.ref),
            target=descriptor_pb2.Descriptor(
                media_type=target.media_type, digest=target.digest, size=target.size
            ),
        )
        try:
            await self.conn.call(
                self.conn.images.Create,
                images_pb2.CreateImageRequest(image=image),
                lease=self.lease,
            )
        except AlreadyExistsError:
            await self.conn.call(
                self.conn.images.Update,
                images_pb2.UpdateImageRequest(image=image),
                lease=self.lease,
            )


async def snapshot_exists(conn: Connection, snapshotter: str, key: str) -> bool:
    try:
        await conn.call(
            conn.snapshots.Stat, snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        )
    except NotFoundError:
        return False
    return True


async def _remove_snapshot(conn: Connection, snapshotter: str, key: str) -> None:
    with contextlib.suppress(NotFoundError):
        await conn.call(
            conn.snapshots.Remove,
            snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key),
            timeout=CLEANUP_TIMEOUT,
        )


async def pull_image(
    conn: Connection,
    ref: str,
    *,
    snapshotter: str = DEFAULT_SNAPSHOTTER,
    platform: Platform | None = None,
    credentials: Mapping[str, Credentials] | None = None,
    insecure_registries: Sequence[str] = (),
    docker_config: Path | None = None,
    progress: ProgressCallback | None = None,
    lease_labels: Mapping[str, str] | None = None,
) -> Image:
    """Pull and unpack ``ref``; returns the image as stored. See the module docstring."""
    reference = parse_reference(ref)
    found = await asyncio.to_thread(creds_mod.lookup, reference.domain, credentials, docker_config)
    insecure = reference.domain in insecure_registries or is_loopback(reference.domain)
    registry = RegistryClient(reference.api_host, credentials=found, plain_http=insecure)
    lease = f"wfe-pull-{secrets.token_hex(6)}"
    creating = asyncio.ensure_future(create_lease(conn, "", labels=lease_labels, lease_id=lease))
    try:
        await asyncio.shield(creating)
        puller = _Puller(
            conn,
            reference,
            registry,
            snapshotter=snapshotter,
            platform=platform or host_platform(),
            lease=lease,
            progress=progress,
        )
        return await puller.run()
    finally:
        await finish_shielded(settle_then(creating, delete_lease(conn, lease)))


async def load_image(
    conn: Connection,
    ref: str,
    *,
    snapshotter: str = DEFAULT_SNAPSHOTTER,
    platform: Platform | None = None,
) -> Image | None:
    """The image named ``ref`` if it is fully present (content and unpacked snapshot), else None."""
    name = str(parse_reference(ref))
    try:
        response = await conn.call(conn.images.Get, images_pb2.GetImageRequest(name=name))
    except NotFoundError:
        return None
    t = response.image.target
    target = Descriptor(t.media_type, t.digest, t.size)
    try:
        manifest_desc = target
        raw = await read_blob(conn, target.digest)
        if target.media_type in INDEX_TYPES:
            chosen = select_manifest(
                parse_index(raw, f"index of {name}"), platform or host_platform()
            )
            if chosen is None:
                return None
            manifest_desc = chosen
            raw = await read_blob(conn, chosen.digest)
        config_desc, layers = parse_manifest(raw, f"manifest of {name}")
        config = ImageConfig.from_json(await read_blob(conn, config_desc.digest))
    except (NotFoundError, PullError):
        return None
    chain = chain_ids(config.diff_ids)
    top = chain[-1] if chain else ""
    if top and not await snapshot_exists(conn, snapshotter, top):
        return None
    return Image(name, target, manifest_desc, config_desc.digest, config, tuple(layers), top)


async def ensure_image(
    conn: Connection,
    ref: str,
    *,
    policy: str = "if-not-present",
    snapshotter: str = DEFAULT_SNAPSHOTTER,
    platform: Platform | None = None,
    credentials: Mapping[str, Credentials] | None = None,
    insecure_registries: Sequence[str] = (),
    docker_config: Path | None = None,
    progress: ProgressCallback | None = None,
    lease_labels: Mapping[str, str] | None = None,
) -> Image:
    """Apply a pull policy: ``always``, ``if-not-present`` or ``never``."""
    if policy not in ("always", "if-not-present", "never"):
        raise ContainerdError(
            f"unknown pull policy {policy!r}: use always, if-not-present or never"
        )
    if policy != "always":
        image = await load_image(conn, ref, snapshotter=snapshotter, platform=platform)
        if image is not None:
            return image
        if policy == "never":
            raise ImageNotFoundError(
                f"image {parse_reference(ref)} is not in containerd's image store at "
                f"{conn.address} (namespace {conn.namespace!r}, snapshotter {snapshotter!r}) and "
                "the pull policy is 'never'; pull it first or set pull: if-not-present"
            )
    return await pull_image(
        conn,
        ref,
        snapshotter=snapshotter,
        platform=platform,
        credentials=credentials,
        insecure_registries=insecure_registries,
        docker_config=docker_config,
        progress=progress,
        lease_labels=lease_labels,
    )
