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

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from wfe_buildkit.errors import InvalidRequest

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


class CacheOptionError(InvalidRequest):
    """A ``cache_from``/``cache_to`` entry is malformed; the message names the entry."""


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
    if "=" not in stripped:
        return _validated(CacheEntry("registry", {"ref": stripped}), direction, here, text)
    try:
        fields = next(csv.reader([stripped], skipinitialspace=True))
    except csv.Error as exc:
        raise CacheOptionError(f"{here}: {text!r} is not valid CSV ({exc})") from None
    kind: str | None = None
    values: dict[str, str] = {}
    for field in fields:
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise CacheOptionError(
                f"{here}: {text!r}: field {field!r} is not key=value "
                "(entries look like type=registry,ref=host/repo:cache,mode=max)"
            )
        if key == "type":
            kind = value.strip()
            continue
        if key in values:
            raise CacheOptionError(f"{here}: {text!r}: {key} is given twice")
        values[key] = value
    if not kind:
        raise CacheOptionError(
            f"{here}: {text!r} has no type= (one of {', '.join(SUPPORTED_TYPES)})"
        )
    return _validated(CacheEntry(kind.lower(), values), direction, here, text)


def _validated(entry: CacheEntry, direction: Direction, here: str, text: str) -> CacheEntry:
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
        raise CacheOptionError("; ".join(problems))
    return tuple(entries)


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
    local_dirs: Mapping[Path, str] | None = None,
) -> control_pb2.CacheOptions:
    """``SolveRequest.Cache`` for the parsed entries.

    ``legacy=False`` (default): ``Imports``/``Exports`` only — right for every daemon since
    BuildKit v0.4. ``legacy=True``: the deprecated fields only, which can express nothing but
    registry entries (and at most one export); other types raise.

    ``local_dirs`` is the result of :func:`local_cache_stores`: local entries then get the
    attrs the daemon needs (the resolved ``digest`` for imports).
    """
    from wfe_buildkit._pb import control_pb2

    imports, exports = tuple(imports), tuple(exports)
    if local_dirs is not None:
        imports = tuple(_with_local_digest(entry) for entry in imports)
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


def without_missing_local_imports(imports: Iterable[CacheEntry]) -> tuple[CacheEntry, ...]:
    """Drop local imports whose directory has no cache yet (first build), as buildctl does."""
    kept: list[CacheEntry] = []
    for entry in imports:
        if entry.type == "local" and not entry.attrs.get("digest"):
            src = Path(entry.attrs["src"])
            if local_cache_digest(src, entry.attrs.get("tag", "latest")) is None:
                continue
        kept.append(entry)
    return tuple(kept)
