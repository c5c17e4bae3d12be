"""Pattern semantics of moby/patternmatcher, case by case (expectations derived from Go's rules).

Each row: patterns, path, expected ``Matches`` result. These are the forms ``.dockerignore``
uses: ``*``, ``**``, ``?``, ``[...]``, ``!`` re-includes, leading and trailing ``/``, escapes.
"""

from __future__ import annotations

import pytest
from wfe_buildkit.patterns import (
    PatternError,
    PatternMatcher,
    compile_pattern,
    go_clean,
    read_dockerignore,
)

CASES = [
    # plain names match the path or any parent at the same depth
    (["foo"], "foo", True),
    (["foo"], "foo/bar", True),
    (["foo"], "foo/bar/baz", True),
    (["foo"], "bar/foo", False),
    (["foo/bar"], "foo/bar/x", True),
    # * and ? never cross /
    (["*.tmp"], "a.tmp", True),
    (["*.tmp"], "dir/a.tmp", False),
    (["*/*.tmp"], "dir/a.tmp", True),
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["*"], "anything/below", True),
    # ** crosses directories, also zero of them
    (["**/foo"], "foo", True),
    (["**/foo"], "a/b/foo", True),
    # Go's Matches only checks the parent at the pattern's depth (a quirk kept on purpose);
    # a directory walk still excludes a/b/foo/c because a/b/foo itself matched
    (["**/foo"], "a/b/foo/c", False),
    (["**/*.log"], "x.log", True),
    (["**/*.log"], "a/b/x.log", True),
    (["a/**/b"], "a/b", True),
    (["a/**/b"], "a/x/y/b", True),
    (["a/**/b"], "a/x/y/c", False),
    (["a/**"], "a/x", True),
    (["a/**"], "a", False),
    (["**"], "anything", True),
    (["docs/**/draft*"], "docs/draft1.md", True),
    (["docs/**/draft*"], "docs/x/y/draft2", True),
    (["docs/**/draft*"], "docs/x/final", False),
    # character classes, negation with ^, escapes
    (["[ab].md"], "a.md", True),
    (["[ab].md"], "c.md", False),
    (["[a-c]x"], "bx", True),
    (["[^a]x"], "bx", True),
    (["[^a]x"], "ax", False),
    (["\\*star"], "*star", True),
    (["\\*star"], "xstar", False),
    # leading and trailing slashes are cleaned away (dockerignore strips the leading one)
    (["dir/"], "dir/file", True),
    (["dir/"], "dir", True),
    (["./a/../b"], "b", True),
    # ! re-includes, last match wins
    (["*.md", "!README.md"], "README.md", False),
    (["*.md", "!README.md"], "CHANGES.md", True),
    (["*.md", "!README.md", "README.md"], "README.md", True),
    (["build", "!build/keep.txt"], "build/keep.txt", False),
    (["build", "!build/keep.txt"], "build/other.txt", True),
    # regexp metacharacters are literal
    (["a+b(c).txt"], "a+b(c).txt", True),
    (["a.b"], "axb", False),
    (["$x"], "$x", True),
]


@pytest.mark.parametrize(("patterns", "path", "expected"), CASES)
def test_matches(patterns: list[str], path: str, expected: bool) -> None:
    assert PatternMatcher(patterns).matches(path) is expected


def test_matches_or_parent_matches() -> None:
    assert PatternMatcher(["**/foo"]).matches_or_parent_matches("a/b/foo/c")
    assert not PatternMatcher(["**/foo"]).matches_or_parent_matches("a/b/food/c")


def test_parent_results_match_full_matching() -> None:
    pm = PatternMatcher(["vendor", "!vendor/important/**"])
    hit, info = pm.matches_using_parent_results("vendor", None)
    assert hit
    hit2, info2 = pm.matches_using_parent_results("vendor/important", info)
    assert hit2
    hit3, _ = pm.matches_using_parent_results("vendor/important/x.txt", info2)
    assert not hit3


@pytest.mark.parametrize("bad", ["[", "a[", "[]", "x\\", "!"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(bad)


def test_go_clean() -> None:
    assert go_clean("") == "."
    assert go_clean("a//b/./c/..") == "a/b"
    assert go_clean("/../a") == "/a"
    assert go_clean("../a") == "../a"
    assert go_clean("a/") == "a"
    assert go_clean("//a") == "/a"


def test_read_dockerignore() -> None:
    text = "\ufeff# comment\n\n  *.tmp  \n/root\n! keep \n./a/../b/\n#x\n"
    assert read_dockerignore(text) == ["*.tmp", "root", "!keep", "b"]
