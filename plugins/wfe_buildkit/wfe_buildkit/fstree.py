"""Walking a local directory the way fsutil does, producing the STAT entries BuildKit expects.

The daemon's receiver enforces a strict contract (see the protocol notes): paths relative and
``/``-separated, a depth-first walk with each directory's entries sorted bytewise, parents sent
before children, Go ``os.FileMode`` bits instead of POSIX ``st_mode``, nanosecond mtimes and uid/gid
forced to 0. Filtering follows fsutil's ``filterFS.Walk``: include patterns (plus followpaths after
resolving symlinks), exclude patterns with ``!`` re-includes, and directories that are filtered out
themselves sent lazily when something below them is included.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

from wfe_buildkit.patterns import PatternMatcher, go_clean, without_trailing_glob

# Go os.FileMode type bits
MODE_DIR = 1 << 31
MODE_APPEND = 1 << 30
MODE_EXCLUSIVE = 1 << 29
MODE_TEMPORARY = 1 << 28
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19
MODE_TYPE = (
    MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE
    | MODE_IRREGULAR
)
_PATTERN_CHARS = set("*[]?^\\")


def go_mode(st_mode: int) -> int:
    """POSIX ``st_mode`` to Go ``os.FileMode``."""
    mode = st_mode & 0o777
    fmt = statmod.S_IFMT(st_mode)
    if fmt == statmod.S_IFDIR:
        mode |= MODE_DIR
    elif fmt == statmod.S_IFLNK:
        mode |= MODE_SYMLINK
    elif fmt == statmod.S_IFBLK:
        mode |= MODE_DEVICE
    elif fmt == statmod.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif fmt == statmod.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif fmt == statmod.S_IFSOCK:
        mode |= MODE_SOCKET
    if st_mode & statmod.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & statmod.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & statmod.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def posix_permissions(mode: int) -> int:
    """The chmod bits (permissions plus setuid/setgid/sticky) of a Go ``os.FileMode``."""
    bits = mode & 0o777
    if mode & MODE_SETUID:
        bits |= statmod.S_ISUID
    if mode & MODE_SETGID:
        bits |= statmod.S_ISGID
    if mode & MODE_STICKY:
        bits |= statmod.S_ISVTX
    return bits


def is_dir(mode: int) -> bool:
    return bool(mode & MODE_DIR)


def is_symlink(mode: int) -> bool:
    return bool(mode & MODE_SYMLINK)


def is_regular(mode: int) -> bool:
    return not mode & MODE_TYPE


@attrs.frozen
class Entry:
    """One walked entry: what goes into a STAT packet, plus where to read a file's bytes."""

    path: str
    mode: int
    size: int
    mtime_ns: int
    linkname: str = ""
    source: str = ""  # absolute path of a regular file to read; "" for anything else


@attrs.frozen
class WalkFilter:
    """What the daemon asked for in a DiffCopy call's metadata."""

    include_patterns: Sequence[str] = ()
    exclude_patterns: Sequence[str] = ()
    follow_paths: Sequence[str] = ()


def _sort_key(name: str) -> bytes:
    return os.fsencode(name)


def _entry(root: str, rel: str, st: os.stat_result) -> Entry | None:
    mode = go_mode(st.st_mode)
    full = os.path.join(root, rel)
    if is_dir(mode):
        return Entry(rel, mode, 0, st.st_mtime_ns)
    if is_symlink(mode):
        return Entry(rel, mode, st.st_size, st.st_mtime_ns, os.readlink(full))
    if is_regular(mode):
        return Entry(rel, mode, st.st_size, st.st_mtime_ns, source=full)
    return None  # sockets, fifos, devices are not part of a build context


def _raw_walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Depth first, entries of each directory sorted bytewise, symlinks never followed."""
    stack: list[Iterator[tuple[str, os.stat_result]]] = [_children(root, "")]
    while stack:
        try:
            rel, st = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        yield rel, st
        if statmod.S_ISDIR(st.st_mode):
            stack.append(_children(root, rel))


def _children(root: str, rel: str) -> Iterator[tuple[str, os.stat_result]]:
    directory = os.path.join(root, rel) if rel else root
    try:
        names = sorted(os.listdir(directory), key=_sort_key)
    except FileNotFoundError:
        return
    for name in names:
        child = f"{rel}/{name}" if rel else name
        try:
            st = os.lstat(os.path.join(root, child))
        except FileNotFoundError:
            continue  # removed while walking
        yield child, st


def resolve_follow_paths(root: str, paths: Sequence[str]) -> list[str]:
    """fsutil's ``FollowLinks``: the followpaths plus the targets of symlinks on their way."""
    resolved: set[str] = set()

    def read_link(rel: str, allow_wildcard: bool) -> list[str] | None:
        base = rel.rsplit("/", 1)[-1]
        parent = rel.rsplit("/", 1)[0] if "/" in rel else "."
        if allow_wildcard and any(c in base for c in "*?["):
            from wfe_buildkit.patterns import compile_pattern

            pat = compile_pattern(base)
            directory = root if parent == "." else os.path.join(root, parent)
            try:
                names = sorted(os.listdir(directory), key=_sort_key)
            except OSError:
                return None
            found: list[str] = []
            for name in names:
                if pat is not None and pat.match(name):
                    child = name if parent == "." else f"{parent}/{name}"
                    found.extend(read_link(child, False) or [])
            return found or None
        try:
            st = os.lstat(os.path.join(root, rel))
        except OSError:
            return None
        if not statmod.S_ISLNK(st.st_mode):
            return None
        link = go_clean(os.readlink(os.path.join(root, rel)))
        if link.startswith("/"):
            return [link]
        return [go_clean("/" + (parent + "/" if parent != "." else "") + link)]

    def append(path: str, depth: int = 0) -> None:
        if depth > 40:
            return
        rest = go_clean("./" + path.lstrip("/"))
        if rest == ".":
            resolved.add(".")
            return
        current = ""
        while True:
            head, _, rest = rest.partition("/")
            current = f"{current}/{head}" if current else head
            targets = read_link(current, True)
            if (not rest or targets is not None) and current in resolved:
                return
            if targets is not None:
                resolved.add(current)
                for target in targets:
                    joined = go_clean(target + ("/" + rest if rest else ""))
                    append(joined, depth + 1)
                return
            if not rest:
                resolved.add(current)
                return

    for p in paths:
        append(p)
    if "." in resolved:  # the whole tree is followed: no filter
        return []
    return _dedupe(sorted(resolved))


@attrs.define
class _Parent:
    """A directory above the walk's current entry: its pattern results and whether it was sent."""

    prefix: str  # its path + "/"
    include_info: tuple[bool, ...]
    exclude_info: tuple[bool, ...]
    entry: Entry | None
    emitted: bool = False


def walk(root: str | Path, flt: WalkFilter | None = None) -> Iterator[Entry]:
    """Yield the entries to send for ``root`` in the order the daemon requires."""
    root = os.fspath(root)
    flt = flt or WalkFilter()
    includes = list(flt.include_patterns)
    if flt.follow_paths:
        targets = resolve_follow_paths(root, flt.follow_paths)
        if targets:
            includes = _dedupe([*includes, *targets])
    include = PatternMatcher(includes) if includes else None
    exclude = PatternMatcher(flt.exclude_patterns) if flt.exclude_patterns else None
    only_prefix_includes = include is None or not any(
        not p.exclusion and _PATTERN_CHARS & set(without_trailing_glob(p))
        for p in include.patterns
    )
    only_prefix_exceptions = exclude is None or not any(
        p.exclusion and _PATTERN_CHARS & set(without_trailing_glob(p)) for p in exclude.patterns
    )
    if include is None and exclude is None:
        for rel, st in _raw_walk(root):
            entry = _entry(root, rel, st)
            if entry is not None:
                yield entry
        return

    parents: list[_Parent] = []  # the directories above the current entry, outermost first
    skip_prefixes: list[str] = []
    for rel, st in _raw_walk(root):
        while skip_prefixes and not rel.startswith(skip_prefixes[-1]):
            skip_prefixes.pop()
        if skip_prefixes and rel.startswith(skip_prefixes[-1]):
            continue
        while parents and not rel.startswith(parents[-1].prefix):
            parents.pop()
        directory = statmod.S_ISDIR(st.st_mode)
        skip = False
        inc_info: tuple[bool, ...] = ()
        exc_info: tuple[bool, ...] = ()
        if include is not None:
            parent_info = parents[-1].include_info if parents else None
            hit, inc_info = include.matches_using_parent_results(rel, parent_info or None)
            if not hit:
                if directory and only_prefix_includes:
                    slash = rel + "/"
                    if not any(
                        (without_trailing_glob(p) + "/").startswith(slash)
                        for p in include.patterns
                        if not p.exclusion
                    ):
                        skip_prefixes.append(slash)
                        continue
                skip = True
        if exclude is not None:
            parent_info = parents[-1].exclude_info if parents else None
            hit, exc_info = exclude.matches_using_parent_results(rel, parent_info or None)
            if hit:
                if directory and only_prefix_exceptions:
                    if not exclude.exclusions:
                        skip_prefixes.append(rel + "/")
                        continue
                    slash = rel + "/"
                    if not any(
                        (without_trailing_glob(p) + "/").startswith(slash)
                        for p in exclude.patterns
                        if p.exclusion
                    ):
                        skip_prefixes.append(slash)
                        continue
                skip = True
        entry = _entry(root, rel, st)
        record = _Parent(rel + "/", inc_info, exc_info, entry)
        if not skip and entry is not None:
            # a directory skipped by the filter is still sent when something below it is
            for parent in parents:
                if not parent.emitted:
                    parent.emitted = True
                    if parent.entry is not None:
                        yield parent.entry
            record.emitted = True
            yield entry
        if directory:
            parents.append(record)


def _dedupe(paths: list[str]) -> list[str]:
    """``paths`` (sorted) without those below an earlier one: sending a directory sends all."""
    out: list[str] = []
    last: str | None = None
    for item in paths:
        if last is not None and item.startswith(last + "/"):
            continue
        out.append(item)
        last = item
    return out


__all__ = [
    "MODE_DIR",
    "MODE_SYMLINK",
    "Entry",
    "WalkFilter",
    "go_mode",
    "is_dir",
    "is_regular",
    "is_symlink",
    "posix_permissions",
    "resolve_follow_paths",
    "walk",
]
