"""``cache_from`` / ``cache_to`` in buildx syntax, turned into the Solve request's cache options.

Accepted entries (the same strings as ``docker buildx build --cache-from/--cache-to``):

* ``type=registry,ref=REGISTRY/REPO:TAG[,mode=min|max][,...]`` — a bare ``REF`` without ``=``
  is shorthand for ``type=registry,ref=REF`` (buildx does the same);
* ``type=inline`` (``cache_to`` only; embeds cache metadata in the image; import it with
  ``type=registry,ref=<the image>``);
* ``type=local,src=DIR`` (``cache_from``) / ``type=local,dest=DIR`` (``cache_to``).

``gha``, ``s3`` and ``azblob`` are refused with an explanation: they need cloud credentials that
buildx injects from its environment, and wfe does not. Other attributes (``oci-mediatypes``,
``image-manifest``, ``compression``, ``ignore-error``...) are passed through unchanged to the
daemon, which knows its own version's set. Fields are comma separated with CSV quoting, so
``"type=registry,ref=a"`` and values containing commas in quotes work as in buildx.

Two request shapes exist:

* ``CacheOptions.Exports`` / ``Imports`` (``CacheOptionsEntry{Type, Attrs}``), understood by
  every daemon since BuildKit v0.4 — Docker 20.10's v0.8 included. This is what
  :func:`solve_cache_options` produces by default.
* The deprecated ``ExportRefDeprecated`` / ``ImportRefsDeprecated`` / ``ExportAttrsDeprecated``
  (registry only). Daemons translate them into entries and *append* them to the new lists
  (control.go ``translateLegacySolveRequest``, "FIXME: skip append if already exists"), so
  filling both shapes would duplicate every entry — and BuildKit before v0.11 rejects more than
  one export. They are produced only when asked (``legacy=True``), for pre-v0.4 daemons.

The Dockerfile frontend needs the imports again in its frontend attributes (``cache-imports``,
JSON), as buildctl sends them: :func:`cache_frontend_attrs`.

Docker 20.10's embedded BuildKit exports only ``inline`` (plus one export at most before v0.11);
local cache needs a content-store service on the session (see :func:`local_cache_stores`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import importlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from wfe_buildkit.errors import InvalidConfig, locate_problems

if TYPE_CHECKING:
    from wfe_buildkit._pb import control_pb2
    from wfe_buildkit.solve import CacheEntry as SolveCacheEntry

Direction = Literal["cache_from", "cache_to"]
SUPPORTED_TYPES = ("registry", "inline", "local")
_REFUSED = {
    "gha": (
        "type=gha needs the GitHub Actions cache service's URL and runtime token, which buildx "
        "takes from the Actions environment and wfe does not; use type=registry with a registry "
        "the runner can reach, or type=inline"
    ),
    "s3": "type=s3 is not supported by wfe (needs AWS credentials from buildx); use type=registry",
    "azblob": (
        "type=azblob is not supported by wfe (needs Azure credentials from buildx); "
        "use type=registry"
    ),
}


class CacheOptionError(InvalidConfig):
    """A ``cache_from``/``cache_to`` entry is malformed; the message names the entry."""


#: Attributes that hold credentials in buildx cache strings (gha ``token``, s3/azblob
#: ``secret_access_key``, s3 ``session_token``...): masked wherever an entry is quoted.
_CREDENTIAL_KEY = re.compile(r"secret|token|password", re.I)


def _shown(text: str) -> str:
    """``text`` as error messages quote it, with credential values replaced by ``***``.

    The cache types that carry credentials (gha, s3, azblob) are refused, and their refusal
    quotes the entry: without this a token would land in diagnostics and build logs. Once an
    entry has a credential attribute, fields that are not ``key=value`` (a value split at a
    comma) are masked too, and an entry that is not even CSV is not quoted at all.
    """
    if not _CREDENTIAL_KEY.search(text):
        return text
    try:
        fields = next(csv.reader([text.strip()], skipinitialspace=True))
    except (csv.Error, StopIteration):
        return "<entry with credentials>"
    shown = []
    for field in fields:
        key, sep, _value = field.partition("=")
        shown.append(field if sep and not _CREDENTIAL_KEY.search(key) else f"{key}=***"
                     if sep else "***")
    return ",".join(shown)


def _sorted_attrs(value: Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(value.items()))


@attrs.frozen
class CacheEntry:
    """One parsed cache import or export: BuildKit's ``CacheOptionsEntry`` as a value.

    Same shape as ``wfe_buildkit.solve.CacheEntry`` (``type``, ``attrs``); kept separate so that
    parsing (used by config validation) does not import grpc. :meth:`to_solve` converts.
    """

    type: str
    attrs: Mapping[str, str] = attrs.field(factory=dict, converter=_sorted_attrs)

    def to_proto(self) -> control_pb2.CacheOptionsEntry:
        from wfe_buildkit._pb import control_pb2

        return control_pb2.CacheOptionsEntry(Type=self.type, Attrs=dict(self.attrs))

    def to_solve(self) -> SolveCacheEntry:
        """The core client's ``solve.CacheEntry`` (for ``SolveOpt.cache_imports/exports``)."""
        from wfe_buildkit.solve import CacheEntry as SolveCacheEntry

        return SolveCacheEntry(self.type, dict(self.attrs))

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``cache-imports`` (Go field names)."""
        return {"Type": self.type, "Attrs": dict(self.attrs)}


def parse_cache_entry(text: str, direction: Direction, *, where: str | None = None) -> CacheEntry:
    """Parse one buildx-style cache string for ``cache_from`` or ``cache_to``.

    ``where`` (e.g. ``cache_to[1]``) prefixes error messages; it defaults to the direction.
    """
    here = where or direction
    if not isinstance(text, str):
        raise CacheOptionError(
            f"{here}: expected a string like 'type=registry,ref=host/repo:cache', "
            f"got {type(text).__name__}"
        )
    stripped = text.strip()
    if not stripped:
        raise CacheOptionError(f"{here}: empty entry")
    shown = _shown(text)
    if "=" not in stripped:
        return _validated(CacheEntry("registry", {"ref": stripped}), direction, here, shown)
    try:
        fields = next(csv.reader([stripped], skipinitialspace=True))
    except csv.Error as exc:
        raise CacheOptionError(f"{here}: {shown!r} is not valid CSV ({exc})") from None
    kind: str | None = None
    values: dict[str, str] = {}
    for field in fields:
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise CacheOptionError(
                f"{here}: {shown!r}: field {field if shown == text else '***'!r} is not key=value "
                "(entries look like type=registry,ref=host/repo:cache,mode=max)"
            )
        if key == "type":
            kind = value.strip()
            continue
        if key in values:
            raise CacheOptionError(f"{here}: {shown!r}: {key} is given twice")
        values[key] = value
    if not kind:
        raise CacheOptionError(
            f"{here}: {shown!r} has no type= (one of {', '.join(SUPPORTED_TYPES)})"
        )
    return _validated(CacheEntry(kind.lower(), values), direction, here, shown)


def _validated(entry: CacheEntry, direction: Direction, here: str, text: str) -> CacheEntry:
    """Check ``entry`` for ``direction``; ``text`` is the entry as messages quote it (masked)."""
    kind, values = entry.type, entry.attrs
    if kind in _REFUSED:
        raise CacheOptionError(f"{here}: {text!r}: {_REFUSED[kind]}")
    if kind not in SUPPORTED_TYPES:
        raise CacheOptionError(
            f"{here}: {text!r}: unknown cache type {kind!r} "
            f"(supported: {', '.join(SUPPORTED_TYPES)})"
        )
    importing = direction == "cache_from"
    if kind == "registry":
        if not values.get("ref"):
            raise CacheOptionError(
                f"{here}: {text!r}: type=registry needs ref=REGISTRY/REPOSITORY[:TAG]"
            )
        if importing and "mode" in values:
            raise CacheOptionError(
                f"{here}: {text!r}: mode= only applies to cache_to (exports)"
            )
    if kind == "inline":
        if importing:
            raise CacheOptionError(
                f"{here}: {text!r}: type=inline is export-only; to use an image's inline cache "
                "put type=registry,ref=<that image> in cache_from"
            )
        if values.get("mode", "min") != "min":
            raise CacheOptionError(
                f"{here}: {text!r}: type=inline supports only mode=min; use type=registry or "
                "type=local for mode=max"
            )
    if kind == "local":
        need, other = ("src", "dest") if importing else ("dest", "src")
        if other in values:
            raise CacheOptionError(
                f"{here}: {text!r}: type=local in {direction} takes {need}=DIR, not {other}="
            )
        if not values.get(need):
            raise CacheOptionError(f"{here}: {text!r}: type=local needs {need}=DIRECTORY")
    if "mode" in values and values["mode"] not in ("min", "max"):
        raise CacheOptionError(f"{here}: {text!r}: mode must be min or max, not {values['mode']!r}")
    return entry


def parse_cache_list(raw: Any, direction: Direction) -> tuple[CacheEntry, ...]:
    """Parse a whole ``cache_from``/``cache_to`` list; one error names every bad entry.

    A single string is accepted as a one-element list.
    """
    if raw is None:
        return ()
    items: Iterable[Any] = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise CacheOptionError(f"{direction}: expected a list of strings")
    problems: list[str] = []
    entries: list[CacheEntry] = []
    for index, item in enumerate(items):
        try:
            entries.append(parse_cache_entry(item, direction, where=f"{direction}[{index}]"))
        except CacheOptionError as exc:
            problems.append(str(exc))
    if problems:
        raise CacheOptionError("; ".join(problems), locate_problems(problems, direction))
    return tuple(entries)


def format_cache_entry(entry: CacheEntry) -> str:
    """The buildx string for ``entry`` (CSV-quoted where needed); parses back to ``entry``."""
    import io

    fields = [f"type={entry.type}", *(f"{k}={v}" for k, v in entry.attrs.items())]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


def resolve_local_paths(
    texts: Iterable[str], direction: Direction, resolve: Callable[[str], Path]
) -> list[str]:
    """``cache_from``/``cache_to`` strings with ``type=local`` ``src``/``dest`` resolved.

    Local cache directories are client paths, so a step resolves them like its other paths
    (relative to the workflow's directory); other entries are returned unchanged. Raises
    :class:`CacheOptionError` for malformed entries, like :func:`parse_cache_list`.
    """
    out: list[str] = []
    for text, entry in zip(texts, parse_cache_list(list(texts), direction), strict=True):
        if entry.type != "local":
            out.append(text)
            continue
        attrs_ = dict(entry.attrs)
        for key in ("src", "dest"):
            if key in attrs_:
                attrs_[key] = str(resolve(attrs_[key]))
        out.append(format_cache_entry(CacheEntry(entry.type, attrs_)))
    return out


def check_daemon_limits(exports: Iterable[CacheEntry], *, multiple_exports: bool) -> None:
    """Refuse several exports for daemons that cannot take them (BuildKit < v0.11)."""
    exports = tuple(exports)
    if len(exports) > 1 and not multiple_exports:
        raise CacheOptionError(
            f"cache_to: this BuildKit accepts only one cache export, {len(exports)} were given "
            "(BuildKit before v0.11 / Docker before 24)"
        )


def solve_cache_options(
    imports: Iterable[CacheEntry],
    exports: Iterable[CacheEntry],
    *,
    legacy: bool = False,
) -> control_pb2.CacheOptions:
    """``SolveRequest.Cache`` for the parsed entries.

    ``legacy=False`` (default): ``Imports``/``Exports`` only — right for every daemon since
    BuildKit v0.4. ``legacy=True``: the deprecated fields only, which can express nothing but
    registry entries (and at most one export); other types raise.

    Local imports must have been through :func:`prepare_local_imports` (they need ``digest``).
    """
    from wfe_buildkit._pb import control_pb2

    imports, exports = tuple(imports), tuple(exports)
    if not legacy:
        return control_pb2.CacheOptions(
            Imports=[entry.to_proto() for entry in imports],
            Exports=[entry.to_proto() for entry in exports],
        )
    for entry in (*imports, *exports):
        if entry.type != "registry":
            raise CacheOptionError(
                f"type={entry.type} cannot be sent to this daemon (its API knows only "
                "registry cache)"
            )
    if len(exports) > 1:
        raise CacheOptionError("cache_to: this daemon accepts only one cache export")
    options = control_pb2.CacheOptions(
        ImportRefsDeprecated=[entry.attrs["ref"] for entry in imports]
    )
    if exports:
        export_attrs = {k: v for k, v in exports[0].attrs.items() if k != "ref"}
        options.ExportRefDeprecated = exports[0].attrs["ref"]
        options.ExportAttrsDeprecated.update(export_attrs)
    return options


def cache_frontend_attrs(imports: Iterable[CacheEntry]) -> dict[str, str]:
    """Frontend attributes announcing the cache imports to the Dockerfile frontend.

    ``cache-imports`` (JSON list of ``{"Type", "Attrs"}``) is what buildctl sends and what
    frontends since v0.4 read; without it the frontend's own solve does not look at the
    imported cache.
    """
    entries = [entry.to_json() for entry in imports]
    if not entries:
        return {}
    return {"cache-imports": json.dumps(entries, separators=(",", ":"))}


# ---------------------------------------------------------------------------------------------
# Local cache directories (client side)

OCI_INDEX = "index.json"
OCI_REF_NAME = "org.opencontainers.image.ref.name"


def local_cache_stores(
    imports: Iterable[CacheEntry], exports: Iterable[CacheEntry]
) -> dict[Path, str]:
    """The client directories local cache entries use, keyed to their session store id.

    BuildKit reaches them through a containerd content service on the session with metadata
    ``buildkit-attachable-store-id: local:<dir>`` (the store id is ``"local:" + dir`` exactly as
    written in the entry, so the entry's path is kept verbatim).
    """
    stores: dict[Path, str] = {}
    for entry in imports:
        if entry.type == "local":
            stores[Path(entry.attrs["src"])] = "local:" + entry.attrs["src"]
    for entry in exports:
        if entry.type == "local":
            stores[Path(entry.attrs["dest"])] = "local:" + entry.attrs["dest"]
    return stores


def local_cache_digest(directory: Path, tag: str = "latest") -> str | None:
    """The manifest digest tagged ``tag`` in a local cache dir's ``index.json``; None if absent.

    buildctl resolves this client-side and sends it as the import's ``digest`` attribute.
    """
    try:
        index = json.loads((directory / OCI_INDEX).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        raise CacheOptionError(f"cache_from: cannot read {directory / OCI_INDEX}: {exc}") from None
    for manifest in index.get("manifests") or ():
        annotations = manifest.get("annotations") or {}
        if annotations.get(OCI_REF_NAME) == tag and isinstance(manifest.get("digest"), str):
            return str(manifest["digest"])
    return None


def _with_local_digest(entry: CacheEntry) -> CacheEntry:
    if entry.type != "local" or entry.attrs.get("digest"):
        return entry
    digest = local_cache_digest(Path(entry.attrs["src"]), entry.attrs.get("tag", "latest"))
    if digest is None:
        return entry
    return CacheEntry(entry.type, {**entry.attrs, "digest": digest})


def prepare_local_imports(imports: Iterable[CacheEntry]) -> tuple[CacheEntry, ...]:
    """Resolve local imports as buildctl does before the build.

    A local import without ``digest`` gets the digest tagged ``tag`` (default ``latest``) in
    its directory's index.json; one whose directory has no cache yet (the first build) is
    dropped instead of failing the build. Other entries pass unchanged.
    """
    kept: list[CacheEntry] = []
    for entry in imports:
        if entry.type == "local" and not entry.attrs.get("digest"):
            entry = _with_local_digest(entry)
            if not entry.attrs.get("digest"):
                continue
        kept.append(entry)
    return tuple(kept)


# ---------------------------------------------------------------------------------------------
# The session content store for local cache (``type=local``)
#
# BuildKit reads and writes a local cache directory through containerd's content service,
# served by the client on the session and selected per call by the metadata
# ``buildkit-attachable-store-id: local:<dir>`` (session/content in BuildKit). The directory is
# an OCI layout: ``blobs/sha256/<hex>``, ``index.json`` (written by the client after the build
# from the ``cache.manifest`` response key, tagged ``latest`` or the entry's ``tag``),
# ``oci-layout``, and ``ingest/`` for writes in progress.
#
# The messages are declared here at run time under a private proto package, so they cannot
# clash with wfe_containerd's generated containerd messages when both plugins are loaded; only
# the service name (``containerd.services.content.v1.Content``) reaches the wire.

CONTENT_SERVICE = "containerd.services.content.v1.Content"
STORE_ID_METADATA = "buildkit-attachable-store-id"
CONTENT_METHODS = tuple(
    f"/{CONTENT_SERVICE}/{name}"
    for name in ("Info", "Update", "Delete", "Read", "Status", "ListStatuses", "Write", "Abort")
)
READ_CHUNK = 1024 * 1024
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
WRITE_STAT, WRITE_WRITE, WRITE_COMMIT = 0, 1, 2

# (message name, [(field name, number, type, label, type_name)])
_MESSAGES: tuple[tuple[str, tuple[tuple[str, int, str, str, str], ...]], ...] = (
    ("Timestamp", (("seconds", 1, "int64", "", ""), ("nanos", 2, "int32", "", ""))),
    ("Empty", ()),
    ("FieldMask", (("paths", 1, "string", "repeated", ""),)),
    ("Info", (
        ("digest", 1, "string", "", ""), ("size", 2, "int64", "", ""),
        ("created_at", 3, "message", "", "Timestamp"),
        ("updated_at", 4, "message", "", "Timestamp"),
        ("labels", 5, "map", "", ""),
    )),
    ("InfoRequest", (("digest", 1, "string", "", ""),)),
    ("InfoResponse", (("info", 1, "message", "", "Info"),)),
    ("UpdateRequest", (
        ("info", 1, "message", "", "Info"), ("update_mask", 2, "message", "", "FieldMask"),
    )),
    ("UpdateResponse", (("info", 1, "message", "", "Info"),)),
    ("DeleteContentRequest", (("digest", 1, "string", "", ""),)),
    ("ReadContentRequest", (
        ("digest", 1, "string", "", ""), ("offset", 2, "int64", "", ""),
        ("size", 3, "int64", "", ""),
    )),
    ("ReadContentResponse", (("offset", 1, "int64", "", ""), ("data", 2, "bytes", "", ""))),
    ("Status", (
        ("started_at", 1, "message", "", "Timestamp"),
        ("updated_at", 2, "message", "", "Timestamp"),
        ("ref", 3, "string", "", ""), ("offset", 4, "int64", "", ""),
        ("total", 5, "int64", "", ""), ("expected", 6, "string", "", ""),
    )),
    ("StatusRequest", (("ref", 1, "string", "", ""),)),
    ("StatusResponse", (("status", 1, "message", "", "Status"),)),
    ("ListStatusesRequest", (("filters", 1, "string", "repeated", ""),)),
    ("ListStatusesResponse", (("statuses", 1, "message", "repeated", "Status"),)),
    ("WriteContentRequest", (
        ("action", 1, "int32", "", ""), ("ref", 2, "string", "", ""),
        ("total", 3, "int64", "", ""), ("expected", 4, "string", "", ""),
        ("offset", 5, "int64", "", ""), ("data", 6, "bytes", "", ""),
        ("labels", 7, "map", "", ""),
    )),
    ("WriteContentResponse", (
        ("action", 1, "int32", "", ""), ("started_at", 2, "message", "", "Timestamp"),
        ("updated_at", 3, "message", "", "Timestamp"), ("offset", 4, "int64", "", ""),
        ("total", 5, "int64", "", ""), ("digest", 6, "string", "", ""),
    )),
    ("AbortRequest", (("ref", 1, "string", "", ""),)),
)
_PROTO_PACKAGE = "wfe.buildkit.localcache"
_content_messages: dict[str, Any] = {}


def content_messages() -> dict[str, Any]:
    """The content service's message classes (built once, on first use)."""
    if _content_messages:
        return _content_messages
    # Through importlib: typed as Any, the same with or without types-protobuf installed.
    descriptor_pb2: Any = importlib.import_module("google.protobuf.descriptor_pb2")
    descriptor_pool: Any = importlib.import_module("google.protobuf.descriptor_pool")
    message_factory: Any = importlib.import_module("google.protobuf.message_factory")

    fdp = descriptor_pb2.FileDescriptorProto(
        name="wfe_buildkit/localcache_content.proto", package=_PROTO_PACKAGE, syntax="proto3"
    )
    field_type = descriptor_pb2.FieldDescriptorProto
    kinds = {
        "string": field_type.TYPE_STRING, "int64": field_type.TYPE_INT64,
        "int32": field_type.TYPE_INT32, "bytes": field_type.TYPE_BYTES,
        "message": field_type.TYPE_MESSAGE,
    }
    for name, fields in _MESSAGES:
        message = fdp.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = message.field.add(name=field_name, number=number)
            field.label = (
                field_type.LABEL_REPEATED if label == "repeated" or kind == "map"
                else field_type.LABEL_OPTIONAL
            )
            if kind == "map":
                entry_name = "".join(p.capitalize() for p in field_name.split("_")) + "Entry"
                entry = message.nested_type.add(name=entry_name)
                entry.options.map_entry = True
                for key_name, key_number in (("key", 1), ("value", 2)):
                    entry.field.add(
                        name=key_name, number=key_number, type=field_type.TYPE_STRING,
                        label=field_type.LABEL_OPTIONAL,
                    )
                field.type = field_type.TYPE_MESSAGE
                field.type_name = f".{_PROTO_PACKAGE}.{name}.{entry_name}"
            else:
                field.type = kinds[kind]
                if type_name:
                    field.type_name = f".{_PROTO_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    file_descriptor = pool.Add(fdp)
    del file_descriptor
    for name, _fields in _MESSAGES:
        descriptor = pool.FindMessageTypeByName(f"{_PROTO_PACKAGE}.{name}")
        _content_messages[name] = message_factory.GetMessageClass(descriptor)
    return _content_messages


def _timestamp(msgs: dict[str, Any], seconds: float) -> Any:
    whole = int(seconds)
    return msgs["Timestamp"](seconds=whole, nanos=int((seconds - whole) * 1e9))


@attrs.frozen
class LocalCacheDir:
    """One local cache directory in OCI layout, as seen by the content service."""

    root: Path

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def ingest(self, ref: str) -> Path:
        import hashlib

        return self.root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()


class ContentStoreServicer:
    """containerd's content service over local cache directories, for one build's session.

    Implements what BuildKit's content proxy uses: ``Info``, ``Read``, ``Write`` (STAT / WRITE
    / COMMIT with offsets, digest and size verification, ALREADY_EXISTS for known blobs),
    ``Status``, ``ListStatuses``, ``Abort``, ``Update`` (labels are not kept) and ``Delete``.
    File I/O runs in worker threads so session health checks keep being answered.
    """

    def __init__(self, stores: Mapping[Path, str]) -> None:
        self._dirs = {store_id: LocalCacheDir(Path(path)) for path, store_id in stores.items()}
        self.msgs = content_messages()
        self._writing: set[tuple[str, str]] = set()  # (store id, ref) with an open writer
        #: Counters for diagnostics and tests.
        self.blobs_written = 0
        self.bytes_read = 0

    # -- helpers ------------------------------------------------------------------------------

    async def _store(self, context: Any) -> LocalCacheDir:
        import grpc

        for key, value in context.invocation_metadata() or ():
            if key.lower() == STORE_ID_METADATA:
                store = self._dirs.get(str(value))
                if store is None:
                    await context.abort(
                        grpc.StatusCode.NOT_FOUND,
                        f"unknown local cache store {value!r} (not in cache_from/cache_to)",
                    )
                assert store is not None
                return store
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"request lacks metadata {STORE_ID_METADATA!r}"
        )
        raise AssertionError("not reached")

    async def _digest(self, context: Any, digest: str) -> str:
        import grpc

        if not _DIGEST_RE.match(digest):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{digest!r} is not a sha256 digest"
            )
        return digest

    def _info(self, store: LocalCacheDir, digest: str) -> Any | None:
        try:
            st = store.blob(digest).stat()
        except FileNotFoundError:
            return None
        return self.msgs["Info"](
            digest=digest, size=st.st_size,
            created_at=_timestamp(self.msgs, st.st_ctime),
            updated_at=_timestamp(self.msgs, st.st_mtime),
        )

    # -- unary methods --------------------------------------------------------------------------

    async def Info(self, request: Any, context: Any) -> Any:
        import grpc

        store = await self._store(context)
        digest = await self._digest(context, request.digest)
        info = await asyncio.to_thread(self._info, store, digest)
        if info is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"content digest {digest}: not found")
        return self.msgs["InfoResponse"](info=info)

    async def Update(self, request: Any, context: Any) -> Any:
        import grpc

        store = await self._store(context)
        digest = await self._digest(context, request.info.digest)
        info = await asyncio.to_thread(self._info, store, digest)
        if info is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"content digest {digest}: not found")
        return self.msgs["UpdateResponse"](info=info)

    async def Delete(self, request: Any, context: Any) -> Any:
        store = await self._store(context)
        digest = await self._digest(context, request.digest)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(store.blob(digest).unlink)
        return self.msgs["Empty"]()

    async def Status(self, request: Any, context: Any) -> Any:
        import grpc

        store = await self._store(context)
        data = store.ingest(request.ref) / "data"
        if not data.exists():
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no write in progress for {request.ref}"
            )
        return self.msgs["StatusResponse"](
            status=self.msgs["Status"](ref=request.ref, offset=data.stat().st_size)
        )

    async def ListStatuses(self, request: Any, context: Any) -> Any:
        await self._store(context)
        return self.msgs["ListStatusesResponse"]()

    async def Abort(self, request: Any, context: Any) -> Any:
        store = await self._store(context)
        await asyncio.to_thread(shutil.rmtree, store.ingest(request.ref), True)
        return self.msgs["Empty"]()

    # -- streams --------------------------------------------------------------------------------

    async def Read(self, request: Any, context: Any) -> AsyncIterator[Any]:
        import grpc

        store = await self._store(context)
        digest = await self._digest(context, request.digest)
        path = store.blob(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"content digest {digest}: not found")
            return
        offset = max(0, request.offset)
        if offset > size:
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE, f"read past object length {size} bytes"
            )
        end = size if request.size <= 0 or offset + request.size > size else offset + request.size
        with path.open("rb") as handle:
            while offset < end:
                handle.seek(offset)
                data = await asyncio.to_thread(handle.read, min(READ_CHUNK, end - offset))
                if not data:
                    break
                yield self.msgs["ReadContentResponse"](offset=offset, data=data)
                offset += len(data)
                self.bytes_read += len(data)

    async def Write(self, request_iterator: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        import grpc

        store = await self._store(context)
        requests = request_iterator.__aiter__()
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        if not first.ref:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "first message must have a reference"
            )
        # One writer per ref, like containerd's local store ("ref locked": clients retry).
        key = (str(store.root), first.ref)
        if key in self._writing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"ref {first.ref} locked")
        self._writing.add(key)
        try:
            async for reply in self._write(store, first, requests, context):
                yield reply
        finally:
            self._writing.discard(key)

    async def _write(
        self, store: LocalCacheDir, first: Any, requests: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        import grpc

        msgs = self.msgs
        ingest = store.ingest(first.ref)
        await asyncio.to_thread(ingest.mkdir, parents=True, exist_ok=True)
        data_path = ingest / "data"
        data_path.touch()
        started = time.time()
        total, expected = first.total, first.expected
        request = first
        with data_path.open("r+b") as handle:
            handle.seek(0, os.SEEK_END)
            while True:
                offset = handle.tell()
                if request.expected:
                    expected = await self._digest(context, request.expected)
                    if await asyncio.to_thread(store.blob(expected).exists):
                        handle.close()
                        await asyncio.to_thread(shutil.rmtree, ingest, True)
                        await context.abort(
                            grpc.StatusCode.ALREADY_EXISTS,
                            f"blob with expected digest {expected} exists",
                        )
                if request.total > 0:
                    total = request.total
                reply = msgs["WriteContentResponse"](action=request.action, offset=offset)
                if request.action == WRITE_STAT:
                    reply.total = total
                    reply.started_at.CopyFrom(_timestamp(msgs, started))
                    reply.updated_at.CopyFrom(_timestamp(msgs, time.time()))
                elif request.action in (WRITE_WRITE, WRITE_COMMIT):
                    if request.offset > 0 and request.offset != offset:
                        await context.abort(
                            grpc.StatusCode.OUT_OF_RANGE,
                            f"write @{request.offset} must occur at current offset {offset}",
                        )
                    if request.offset == 0 and offset > 0:
                        handle.truncate(0)
                        handle.seek(0)
                    if request.data:
                        await asyncio.to_thread(handle.write, request.data)
                    reply.offset = handle.tell()
                    if request.action == WRITE_COMMIT:
                        handle.flush()
                        try:
                            digest = await asyncio.to_thread(
                                _commit, store, data_path, total, expected
                            )
                        except _CommitMismatch as exc:
                            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
                        reply.digest = digest
                        self.blobs_written += 1
                else:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, f"unknown write action {request.action}"
                    )
                if request.action == WRITE_COMMIT:
                    # Clean up before answering: the client may look right after the reply.
                    await asyncio.to_thread(shutil.rmtree, ingest, True)
                    yield reply
                    return
                yield reply
                try:
                    request = await requests.__anext__()
                except StopAsyncIteration:
                    return


class _CommitMismatch(Exception):
    """The written data is not what the writer announced (size or digest)."""


def _commit(store: LocalCacheDir, data_path: Path, total: int, expected: str) -> str:
    """Verify size and digest, move the ingest into ``blobs``; raise :class:`_CommitMismatch`."""
    import hashlib

    size = data_path.stat().st_size
    if total > 0 and size != total:
        raise _CommitMismatch(f"unexpected commit size {size}, expected {total}")
    sha = hashlib.sha256()
    with data_path.open("rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            sha.update(chunk)
    digest = "sha256:" + sha.hexdigest()
    if expected and digest != expected:
        raise _CommitMismatch(f"unexpected commit digest {digest}, expected {expected}")
    target = store.blob(digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(data_path, target)
    layout = store.root / "oci-layout"
    if not layout.exists():
        layout.write_text('{"imageLayoutVersion":"1.0.0"}')
    return digest


@attrs.define
class LocalCacheService:
    """The session plug-in (``wfe_buildkit.session.SessionService``) for local cache dirs."""

    servicer: ContentStoreServicer
    methods: Sequence[str] = CONTENT_METHODS

    def register(self, server: Any) -> None:
        import grpc

        msgs = self.servicer.msgs
        s = self.servicer

        def unary(handler: Any, request: str, response: str) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                handler, request_deserializer=msgs[request].FromString,
                response_serializer=msgs[response].SerializeToString,
            )

        handlers = {
            "Info": unary(s.Info, "InfoRequest", "InfoResponse"),
            "Update": unary(s.Update, "UpdateRequest", "UpdateResponse"),
            "Delete": unary(s.Delete, "DeleteContentRequest", "Empty"),
            "Status": unary(s.Status, "StatusRequest", "StatusResponse"),
            "ListStatuses": unary(s.ListStatuses, "ListStatusesRequest", "ListStatusesResponse"),
            "Abort": unary(s.Abort, "AbortRequest", "Empty"),
            "Read": grpc.unary_stream_rpc_method_handler(
                s.Read, request_deserializer=msgs["ReadContentRequest"].FromString,
                response_serializer=msgs["ReadContentResponse"].SerializeToString,
            ),
            "Write": grpc.stream_stream_rpc_method_handler(
                s.Write, request_deserializer=msgs["WriteContentRequest"].FromString,
                response_serializer=msgs["WriteContentResponse"].SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(CONTENT_SERVICE, handlers),)
        )


def local_cache_service(stores: Mapping[Path, str]) -> LocalCacheService:
    """A :class:`LocalCacheService` for :func:`local_cache_stores`' directories."""
    return LocalCacheService(ContentStoreServicer(stores))


def update_local_cache_index(
    exports: Iterable[CacheEntry], exporter_response: Mapping[str, str]
) -> list[Path]:
    """After a build: tag the exported cache manifest in each local ``dest``'s index.json.

    BuildKit answers ``cache.manifest`` (a JSON OCI descriptor); the client records it with the
    ``org.opencontainers.image.ref.name`` annotation (``latest`` or the entry's ``tag``),
    replacing an older manifest of the same tag — as buildctl does. Returns the dirs updated.
    """
    raw = exporter_response.get("cache.manifest")
    if not raw:
        return []
    descriptor = json.loads(raw)
    updated: list[Path] = []
    for entry in exports:
        if entry.type != "local":
            continue
        directory = Path(entry.attrs["dest"])
        tag = entry.attrs.get("tag", "latest")
        index_path = directory / OCI_INDEX
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                     "manifests": []}
        manifests = [
            m for m in index.get("manifests") or []
            if (m.get("annotations") or {}).get(OCI_REF_NAME) != tag
        ]
        tagged = dict(descriptor)
        tagged["annotations"] = {**(descriptor.get("annotations") or {}), OCI_REF_NAME: tag}
        manifests.append(tagged)
        index["manifests"] = manifests
        directory.mkdir(parents=True, exist_ok=True)
        tmp = index_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(index), encoding="utf-8")
        os.replace(tmp, index_path)
        layout = directory / "oci-layout"
        if not layout.exists():
            layout.write_text('{"imageLayoutVersion":"1.0.0"}')
        updated.append(directory)
    return updated
