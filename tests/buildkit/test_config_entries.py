"""The entry helpers shared by the secrets, ssh and registry_auth parsers."""

from __future__ import annotations

from pathlib import Path

import attrs
from wfe_buildkit.build_secrets import parse_secrets
from wfe_buildkit.config_entries import entry_fields, resolve_under


@attrs.frozen
class _Entry:
    id: str
    file: str | None = None
    env: str | None = None


def test_entry_fields() -> None:
    assert entry_fields({"id": "a", "env": None}) == {"id": "a", "env": None}
    assert entry_fields(_Entry("a", file="f")) == {"id": "a", "file": "f"}
    assert entry_fields("a") is None
    assert entry_fields(["a"]) is None


def test_attrs_secret_entry_reads_file_as_src() -> None:
    (spec,) = parse_secrets([_Entry("a", file="token.txt")])
    assert spec.src == Path("token.txt")


def test_resolve_under(tmp_path: Path) -> None:
    assert resolve_under(Path("k"), tmp_path) == tmp_path / "k"
    assert resolve_under(Path("/abs/k"), tmp_path) == Path("/abs/k")
    assert resolve_under(Path("k"), None) == Path("k")
    assert resolve_under(Path("~/k"), tmp_path) == Path.home() / "k"
