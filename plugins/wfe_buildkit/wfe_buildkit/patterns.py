"""Path patterns with the semantics of Go's moby/patternmatcher (what ``.dockerignore`` uses).

Python's ``fnmatch`` is not equivalent: here ``*`` and ``?`` never cross ``/``, ``**`` matches any
number of directories, a pattern that matches a directory also matches everything below it,
patterns are ``filepath.Clean``-ed, ``!`` lines re-include and the last matching line wins.
Patterns are compiled the way patternmatcher compiles them (exact, prefix, suffix or regexp), so
edge cases such as ``**/foo`` matching ``foo`` or ``[^a]`` negating behave exactly as with
``docker build``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

from wfe_buildkit.errors import InvalidRequest

_ESCAPED = set(".+()|{}$")
_EXACT, _PREFIX, _SUFFIX, _REGEXP = "exact", "prefix", "suffix", "regexp"


class PatternError(InvalidRequest):
    """A pattern is malformed (Go's ``filepath.ErrBadPattern``)."""


def go_clean(path: str) -> str:
    """Go's ``path/filepath.Clean`` for ``/``-separated paths."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _check_syntax(pattern: str) -> None:
    """Reject what Go's ``filepath.Match`` rejects: bad ``[...]`` classes, a trailing ``\\``."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise PatternError(f"bad pattern {pattern!r}: trailing backslash")
            i += 2
            continue
        if ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < n and pattern[i] == "]" and ranges > 0:
                    i += 1
                    break
                if i >= n or pattern[i] in "-]":
                    raise PatternError(f"bad pattern {pattern!r}: malformed character class")
                if pattern[i] == "\\":
                    i += 1
                    if i >= n:
                        raise PatternError(f"bad pattern {pattern!r}: trailing backslash")
                i += 1
                if i < n and pattern[i] == "-":
                    i += 1
                    if i >= n or pattern[i] in "-]":
                        raise PatternError(f"bad pattern {pattern!r}: malformed range")
                    if pattern[i] == "\\":
                        i += 1
                    i += 1
                ranges += 1
            continue
        i += 1


@attrs.frozen
class Pattern:
    """One compiled pattern line."""

    text: str
    exclusion: bool
    dirs: int
    kind: str
    regex: re.Pattern[str] | None = attrs.field(eq=False, repr=False)

    def match(self, path: str) -> bool:
        """Whether ``path`` (clean, relative, ``/``-separated) matches this line's pattern."""
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix[:1] == "/" and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None


def compile_pattern(line: str) -> Pattern | None:
    """Compile one line the way ``patternmatcher.New`` does; None for a blank line."""
    text = line.strip()
    if not text:
        return None
    text = go_clean(text)
    exclusion = False
    if text.startswith("!"):
        if len(text) == 1:
            raise PatternError('illegal exclusion pattern: "!"')
        exclusion = True
        text = text[1:]
    _check_syntax(text)
    regex_src = "^"
    kind = _EXACT
    i, n = 0, len(text)
    index = 0
    while i < n:
        ch = text[i]
        i += 1
        if ch == "*":
            if i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1
                if i >= n:
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        regex_src += ".*"
                        kind = _REGEXP
                else:
                    regex_src += "(.*/)?"
                    kind = _REGEXP
                if index == 0:
                    kind = _SUFFIX
            else:
                regex_src += "[^/]*"
                kind = _REGEXP
        elif ch == "?":
            regex_src += "[^/]"
            kind = _REGEXP
        elif ch in _ESCAPED:
            regex_src += "\\" + ch
        elif ch == "\\":
            if i < n:
                regex_src += "\\" + text[i]
                i += 1
                kind = _REGEXP
            else:
                regex_src += "\\\\"
        elif ch in "[]":
            regex_src += ch
            kind = _REGEXP
        else:
            regex_src += ch
        index += 1
    regex: re.Pattern[str] | None = None
    if kind == _REGEXP:
        try:
            regex = re.compile(regex_src + "$", re.DOTALL)
        except re.error as exc:
            raise PatternError(f"bad pattern {line.strip()!r}: {exc}") from None
    return Pattern(text, exclusion, len(text.split("/")), kind, regex)


class PatternMatcher:
    """An ordered list of patterns; ``matches(path)`` says whether the list selects ``path``."""

    def __init__(self, lines: Iterable[str]) -> None:
        compiled = [compile_pattern(line) for line in lines]
        self.patterns: tuple[Pattern, ...] = tuple(p for p in compiled if p is not None)
        self.exclusions = any(p.exclusion for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """patternmatcher's ``Matches``: the path or its ancestor at each pattern's depth."""
        matched = False
        parent = _dirname(path)
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != "." and pattern.dirs <= len(parent_dirs):
                hit = pattern.match("/".join(parent_dirs[: pattern.dirs]))
            if hit:
                matched = not pattern.exclusion
        return matched

    def matches_or_parent_matches(self, path: str) -> bool:
        """patternmatcher's ``MatchesOrParentMatches``: the path or any of its ancestors."""
        matched = False
        parent = _dirname(path)
        parent_dirs = parent.split("/")
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                hit = any(
                    pattern.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs))
                )
            if hit:
                matched = not pattern.exclusion
        return matched

    def matches_using_parent_results(
        self, path: str, parent: Sequence[bool] | None
    ) -> tuple[bool, tuple[bool, ...]]:
        """patternmatcher's ``MatchesUsingParentResults``: what a directory walk uses.

        ``parent`` is the per-pattern result of the parent directory (None at the top or when
        the parent's result is unknown); the returned tuple is this path's, for its children.
        """
        matched = False
        info: list[bool] = []
        for i, pattern in enumerate(self.patterns):
            hit = bool(parent[i]) if parent else False
            if not hit:
                if pattern.exclusion != matched:
                    info.append(False)
                    continue
                hit = pattern.match(path)
                if not hit and not parent:
                    parent_path = _dirname(path)
                    if parent_path != ".":
                        dirs = parent_path.split("/")
                        hit = any(
                            pattern.match("/".join(dirs[: j + 1])) for j in range(len(dirs))
                        )
            info.append(hit)
            if hit:
                matched = not pattern.exclusion
        return matched, tuple(info)


def without_trailing_glob(pattern: Pattern) -> str:
    """fsutil's ``patternWithoutTrailingGlob``: ``a/b/**`` and ``a/b/*`` become ``a/b``."""
    text = pattern.text
    for suffix in ("/**", "/*"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return text


def read_dockerignore(text: str) -> list[str]:
    """Parse ``.dockerignore`` content like moby's ``dockerignore.ReadAll``."""
    out: list[str] = []
    for index, raw in enumerate(text.splitlines()):
        line = raw
        if index == 0:
            line = line.lstrip("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        out.append("!" + line if invert else line)
    return out


def _dirname(path: str) -> str:
    head, sep, _tail = path.rpartition("/")
    if not sep:
        return "."
    return head or "/"


__all__ = [
    "Pattern",
    "PatternError",
    "PatternMatcher",
    "compile_pattern",
    "go_clean",
    "read_dockerignore",
    "without_trailing_glob",
]
