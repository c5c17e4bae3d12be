"""Resolving a user spec (``app``, ``1000``, ``app:staff``, ``1000:1000``) against an image.

A name only means something inside the image, so ``/etc/passwd`` and ``/etc/group`` are read out
of the image's layer blobs in the content store (top layer first, honouring ``.wh.`` whiteouts);
nothing is mounted. Each blob is spooled to a temporary file, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import tarfile
import tempfile
from collections.abc import Sequence

import attrs

from wfe_containerd.connection import Connection
from wfe_containerd.content import iter_blob
from wfe_containerd.errors import RunError
from wfe_containerd.oci import Descriptor

CACHE_ENTRIES = 256
_CACHE: dict[tuple[str, ...], ResolvedUser] = {}
"""Resolved users by (user spec, layer digests): layers are immutable, so this never goes stale."""


@attrs.frozen
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()


@attrs.frozen
class PasswdEntry:
    name: str
    uid: int
    gid: int


@attrs.frozen
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def parse_passwd(text: str) -> list[PasswdEntry]:
    entries = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
            entries.append(PasswdEntry(parts[0], int(parts[2]), int(parts[3])))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    entries = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            members = tuple(m for m in (parts[3].split(",") if len(parts) > 3 else []) if m)
            entries.append(GroupEntry(parts[0], int(parts[2]), members))
    return entries


def needs_lookup(user: str) -> bool:
    """Whether resolving ``user`` needs the image's files (anything but ``uid:gid`` numbers)."""
    name, _, group = user.partition(":")
    return not (name.isdigit() and group.isdigit())


def resolve_user(user: str, passwd: str | None, group: str | None) -> ResolvedUser:
    """Turn a user spec into numbers, the way containerd's ``WithUser`` does."""
    if not user:
        return ResolvedUser(0, 0, (0,))
    name, _, grp = user.partition(":")
    users = parse_passwd(passwd or "")
    groups = parse_group(group or "")
    username = name
    if name.isdigit():
        uid = int(name)
        match = next((u for u in users if u.uid == uid), None)
        gid = match.gid if match else 0
        username = match.name if match else ""
    else:
        match = next((u for u in users if u.name == name), None)
        if match is None:
            where = "its /etc/passwd" if passwd is not None else "it (the image has no /etc/passwd)"
            raise RunError(
                f"user {name!r} is not defined in the image: no entry in {where}; "
                "use a numeric uid:gid or a user the image defines"
            )
        uid, gid = match.uid, match.gid
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            found = next((g for g in groups if g.name == grp), None)
            if found is None:
                raise RunError(f"group {grp!r} is not defined in the image's /etc/group")
            gid = found.gid
    extra = [gid]
    if username and not grp:
        extra += [g.gid for g in groups if username in g.members and g.gid not in extra]
    return ResolvedUser(uid, gid, tuple(extra))


def _scan_layer(path: str, want: set[str]) -> tuple[dict[str, str], set[str]]:
    """Files found in one layer tar and files it deletes (whiteouts, opaque /etc)."""
    found: dict[str, str] = {}
    deleted: set[str] = set()
    with tarfile.open(path, mode="r:*") as tar:
        for member in tar:
            name = member.name.lstrip("./").lstrip("/")
            if name == "etc/.wh..wh..opq":
                deleted.update(want)
                continue
            directory, _, base = name.rpartition("/")
            if directory == "etc" and base.startswith(".wh."):
                target = f"etc/{base[4:]}"
                if target in want:
                    deleted.add(target)
                continue
            if name in want and member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    found[name] = handle.read(4 * 1024 * 1024).decode("utf-8", "replace")
    return found, deleted


async def read_image_files(
    conn: Connection, layers: Sequence[Descriptor], names: Sequence[str]
) -> dict[str, str | None]:
    """The contents of ``names`` (e.g. ``etc/passwd``) as seen in the image's final rootfs."""
    want = set(names)
    result: dict[str, str | None] = {}
    for layer in reversed(layers):
        if not want:
            break
        chunks = iter_blob(conn, layer.digest)
        with tempfile.NamedTemporaryFile(prefix="wfe-layer-") as spool:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    await asyncio.to_thread(spool.write, chunk)
            await asyncio.to_thread(spool.flush)
            found, deleted = await asyncio.to_thread(_scan_layer, spool.name, want)
        for name, text in found.items():
            result[name] = text
        for name in deleted - set(found):
            result[name] = None
        want -= set(found) | deleted
    for name in want:
        result[name] = None
    return result


async def resolve_image_user(
    conn: Connection, layers: Sequence[Descriptor], user: str
) -> ResolvedUser:
    """Resolve ``user`` against the image's own passwd and group files."""
    if not needs_lookup(user):
        name, _, grp = user.partition(":")
        return ResolvedUser(int(name), int(grp), (int(grp),))
    key = (user, *(layer.digest for layer in layers))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    files = await read_image_files(conn, layers, ["etc/passwd", "etc/group"])
    resolved = resolve_user(user, files["etc/passwd"], files["etc/group"])
    if len(_CACHE) >= CACHE_ENTRIES:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = resolved
    return resolved
