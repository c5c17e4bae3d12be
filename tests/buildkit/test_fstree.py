"""The client's walk: order, Go FileMode bits, filters (checked against the conformance table)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from wfe_buildkit.fstree import (
    MODE_DIR,
    MODE_SYMLINK,
    WalkFilter,
    go_mode,
    posix_permissions,
    resolve_follow_paths,
    walk,
)
from wfe_buildkit.patterns import read_dockerignore

from tests.buildkit.dockerignore_cases import SCENARIOS, Scenario
from tests.buildkit.trees import make_tree


def test_go_mode_bits() -> None:
    assert go_mode(0o40755) == MODE_DIR | 0o755
    assert go_mode(0o120777) == MODE_SYMLINK | 0o777
    assert go_mode(0o100644) == 0o644
    assert go_mode(0o104755) == (1 << 23) | 0o755  # setuid
    assert posix_permissions((1 << 23) | (1 << 20) | 0o755) == 0o5755


def test_walk_order_is_fsutil_order(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a/b": "1", "a-b": "2", "a0": "3", "B": "4", "link": ("link", "a")})
    paths = [e.path for e in walk(tmp_path)]
    # entries of each directory sorted bytewise, a directory's subtree right after it
    assert paths == ["B", "a", "a/b", "a-b", "a0", "link"]


def test_walk_entries(tmp_path: Path) -> None:
    make_tree(tmp_path, {"dir/x.sh": ("exec", "x"), "l": ("link", "dir/x.sh"), "e": None})
    entries = {e.path: e for e in walk(tmp_path)}
    assert entries["dir"].mode == MODE_DIR | 0o755 and entries["dir"].size == 0
    assert entries["dir/x.sh"].mode == 0o755 and entries["dir/x.sh"].size == 1
    assert entries["l"].mode & MODE_SYMLINK and entries["l"].linkname == "dir/x.sh"
    assert entries["e"].mode & MODE_DIR
    assert entries["dir/x.sh"].mtime_ns == os.lstat(tmp_path / "dir/x.sh").st_mtime_ns


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_dockerignore_table_walk(tmp_path: Path, scenario: Scenario) -> None:
    make_tree(tmp_path, scenario.tree)
    (tmp_path / ".dockerignore").write_text(scenario.ignore)
    flt = WalkFilter(exclude_patterns=read_dockerignore(scenario.ignore))
    got = [e.path for e in walk(tmp_path, flt)]
    assert set(got) == set(scenario.expected)
    assert len(got) == len(set(got))


def test_followpaths_resolve_symlinks(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"real/Dockerfile": "FROM scratch", "Dockerfile": ("link", "real/Dockerfile"), "x": "1"},
    )
    assert resolve_follow_paths(tmp_path.as_posix(), ["Dockerfile"]) == [
        "Dockerfile",
        "real/Dockerfile",
    ]
    got = [e.path for e in walk(tmp_path, WalkFilter(follow_paths=["Dockerfile"]))]
    assert got == ["Dockerfile", "real", "real/Dockerfile"]


def test_followpaths_missing_file_sends_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": "1", "d/b": "2"})
    assert [e.path for e in walk(tmp_path, WalkFilter(follow_paths=[".dockerignore"]))] == []


def test_include_patterns(tmp_path: Path) -> None:
    make_tree(tmp_path, {"src/a.c": "1", "src/b.h": "2", "doc/x": "3"})
    got = [e.path for e in walk(tmp_path, WalkFilter(include_patterns=["src/*.c"]))]
    assert got == ["src", "src/a.c"]
