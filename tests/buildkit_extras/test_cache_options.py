"""buildx-syntax cache_from / cache_to parsing and the Solve request shapes (unit tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wfe_buildkit.cache_options import (
    CacheEntry,
    CacheOptionError,
    cache_frontend_attrs,
    check_daemon_limits,
    local_cache_digest,
    local_cache_stores,
    parse_cache_entry,
    parse_cache_list,
    prepare_local_imports,
    solve_cache_options,
    )


@pytest.mark.parametrize(
    ("text", "direction", "expected"),
    [
        (
            "type=registry,ref=127.0.0.1:5000/app:cache,mode=max",
            "cache_to",
            CacheEntry("registry", {"ref": "127.0.0.1:5000/app:cache", "mode": "max"}),
        ),
        ("127.0.0.1:5000/app:cache", "cache_from",
         CacheEntry("registry", {"ref": "127.0.0.1:5000/app:cache"})),
        ("type=inline", "cache_to", CacheEntry("inline", {})),
        ("type=local,src=/tmp/c", "cache_from", CacheEntry("local", {"src": "/tmp/c"})),
        ("type=local,dest=/tmp/c,mode=max", "cache_to",
         CacheEntry("local", {"dest": "/tmp/c", "mode": "max"})),
        # CSV quoting, case-insensitive keys, spaces after commas, pass-through attrs
        ('type=registry,"ref=r/a:c", Oci-Mediatypes=true, "x-note=a,b"', "cache_to",
         CacheEntry("registry", {"ref": "r/a:c", "oci-mediatypes": "true",
                                 "x-note": "a,b"})),
        ("TYPE=Registry,ref=r/a", "cache_from", CacheEntry("registry", {"ref": "r/a"})),
    ],
)
def test_parse_valid(text: str, direction: str, expected: CacheEntry) -> None:
    assert parse_cache_entry(text, direction) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "direction", "fragment"),
    [
        ("", "cache_from", "empty entry"),
        ("ref=r/a", "cache_from", "has no type="),
        ("type=registry", "cache_from", "type=registry needs ref="),
        ("type=registry,ref=", "cache_to", "type=registry needs ref="),
        ("type=registry,ref=r,mode=max", "cache_from", "mode= only applies to cache_to"),
        ("type=registry,ref=r,mode=all", "cache_to", "mode must be min or max, not 'all'"),
        ("type=registry,ref=r,max", "cache_to", "field 'max' is not key=value"),
        ("type=registry,ref=a,ref=b", "cache_to", "ref is given twice"),
        ("type=inline", "cache_from", "type=inline is export-only"),
        ("type=inline,mode=max", "cache_to", "type=inline supports only mode=min"),
        ("type=local,dest=/x", "cache_from", "takes src=DIR, not dest="),
        ("type=local,src=/x", "cache_to", "takes dest=DIR, not src="),
        ("type=local", "cache_to", "type=local needs dest=DIRECTORY"),
        ("type=gha", "cache_to", "type=gha needs the GitHub Actions cache service"),
        ("type=s3,bucket=b", "cache_to", "type=s3 is not supported"),
        ("type=redis,url=x", "cache_to", "unknown cache type 'redis'"),
    ],
)
def test_parse_errors_name_the_entry(text: str, direction: str, fragment: str) -> None:
    with pytest.raises(CacheOptionError) as info:
        parse_cache_entry(text, direction, where=f"{direction}[2]")  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"{direction}[2]: ")
    assert fragment in message


def test_parse_list_reports_every_bad_entry() -> None:
    assert parse_cache_list(None, "cache_from") == ()
    assert parse_cache_list("r/a:c", "cache_from") == (CacheEntry("registry", {"ref": "r/a:c"}),)
    with pytest.raises(CacheOptionError) as info:
        parse_cache_list(["type=inline", "type=gha", "type=registry"], "cache_from")
    text = str(info.value)
    assert "cache_from[0]" in text and "cache_from[1]" in text and "cache_from[2]" in text
    with pytest.raises(CacheOptionError, match="expected a list of strings"):
        parse_cache_list({"type": "inline"}, "cache_to")
    with pytest.raises(CacheOptionError, match=r"cache_to\[0\]: expected a string"):
        parse_cache_list([{"type": "inline"}], "cache_to")


def test_solve_cache_options_new_fields() -> None:
    imports = parse_cache_list(["type=registry,ref=r/a:cache", "r/a:latest"], "cache_from")
    exports = parse_cache_list(["type=registry,ref=r/a:cache,mode=max"], "cache_to")
    options = solve_cache_options(imports, exports)
    assert [(e.Type, dict(e.Attrs)) for e in options.Imports] == [
        ("registry", {"ref": "r/a:cache"}),
        ("registry", {"ref": "r/a:latest"}),
    ]
    assert [(e.Type, dict(e.Attrs)) for e in options.Exports] == [
        ("registry", {"mode": "max", "ref": "r/a:cache"})
    ]
    # never both shapes: daemons append the legacy fields to the new ones (duplicates)
    assert options.ExportRefDeprecated == ""
    assert list(options.ImportRefsDeprecated) == []


def test_solve_cache_options_legacy_fields() -> None:
    imports = parse_cache_list(["r/a:cache"], "cache_from")
    exports = parse_cache_list(["type=registry,ref=r/a:cache,mode=max"], "cache_to")
    options = solve_cache_options(imports, exports, legacy=True)
    assert list(options.ImportRefsDeprecated) == ["r/a:cache"]
    assert options.ExportRefDeprecated == "r/a:cache"
    assert dict(options.ExportAttrsDeprecated) == {"mode": "max"}
    assert len(options.Imports) == 0 and len(options.Exports) == 0
    with pytest.raises(CacheOptionError, match="type=inline cannot be sent"):
        solve_cache_options((), parse_cache_list(["type=inline"], "cache_to"), legacy=True)


def test_request_wire_bytes_match_the_control_proto() -> None:
    """Serialized through the core's SolveRequest: the cache lands in field 8."""
    from wfe_buildkit._pb import control_pb2

    options = solve_cache_options((), parse_cache_list(["type=inline"], "cache_to"))
    request = control_pb2.SolveRequest(Ref="r")
    request.Cache.CopyFrom(options)
    again = control_pb2.SolveRequest.FromString(request.SerializeToString())
    assert [e.Type for e in again.Cache.Exports] == ["inline"]


def test_frontend_attrs_and_core_solve_entries() -> None:
    imports = parse_cache_list(["type=registry,ref=r/a:c"], "cache_from")
    attrs = cache_frontend_attrs(imports)
    assert json.loads(attrs["cache-imports"]) == [{"Type": "registry", "Attrs": {"ref": "r/a:c"}}]
    assert cache_frontend_attrs(()) == {}
    core = imports[0].to_solve()
    assert (core.type, dict(core.attrs)) == ("registry", {"ref": "r/a:c"})


def test_daemon_limits() -> None:
    exports = parse_cache_list(["type=inline", "type=registry,ref=r/a:c"], "cache_to")
    check_daemon_limits(exports, multiple_exports=True)
    with pytest.raises(CacheOptionError, match="accepts only one cache export, 2 were given"):
        check_daemon_limits(exports, multiple_exports=False)


def write_index(directory: Path, digest: str, tag: str = "latest") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": 1,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }))


def test_local_cache_directories(tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    write_index(tmp_path / "c", digest)
    imports = parse_cache_list(
        [f"type=local,src={tmp_path / 'c'}", f"type=local,src={tmp_path / 'empty'}"], "cache_from"
    )
    exports = parse_cache_list([f"type=local,dest={tmp_path / 'out'}"], "cache_to")
    assert local_cache_digest(tmp_path / "c") == digest
    assert local_cache_digest(tmp_path / "c", "other") is None
    assert local_cache_digest(tmp_path / "empty") is None
    kept = prepare_local_imports(imports)
    assert kept == (CacheEntry("local", {"src": str(tmp_path / "c"), "digest": digest}),)
    stores = local_cache_stores(kept, exports)
    assert stores == {
        tmp_path / "c": f"local:{tmp_path / 'c'}",
        tmp_path / "out": f"local:{tmp_path / 'out'}",
    }
    options = solve_cache_options(kept, exports)
    assert dict(options.Imports[0].Attrs) == {"src": str(tmp_path / "c"), "digest": digest}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text("{")
    with pytest.raises(CacheOptionError, match="cannot read"):
        local_cache_digest(tmp_path / "bad")


def test_problems_are_located_per_entry() -> None:
    with pytest.raises(CacheOptionError) as info:
        parse_cache_list(["type=inline", "type=gha"], "cache_to")
    assert [path for path, _ in info.value.problems] == [("cache_to", 1)]
    with pytest.raises(CacheOptionError) as info:
        parse_cache_list(["type=inline", "type=registry"], "cache_from")
    assert [path for path, _ in info.value.problems] == [("cache_from", 0), ("cache_from", 1)]


def test_format_and_resolve_local_paths(tmp_path: Path) -> None:
    from wfe_buildkit.cache_options import format_cache_entry, resolve_local_paths

    entry = CacheEntry("registry", {"ref": "r/a:c", "x-note": "a,b", "mode": "max"})
    assert parse_cache_entry(format_cache_entry(entry), "cache_to") == entry
    texts = ["type=local,dest=cache/dir,mode=max", "type=inline", '"type=local","dest=a,b"']
    resolved = resolve_local_paths(texts, "cache_to", lambda p: tmp_path / p)
    assert resolved[1] == "type=inline"
    assert parse_cache_entry(resolved[0], "cache_to") == CacheEntry(
        "local", {"dest": str(tmp_path / "cache/dir"), "mode": "max"})
    assert parse_cache_entry(resolved[2], "cache_to").attrs["dest"] == str(tmp_path / "a,b")
    assert resolve_local_paths(["type=local,src=/abs"], "cache_from", lambda p: Path(p)) == [
        "type=local,src=/abs"]


@pytest.mark.parametrize(
    "text",
    [
        "type=gha,url=https://cache.example,token=ghs_SECRETVALUE",
        "type=s3,bucket=b,access_key_id=AK,secret_access_key=SECRETVALUE",
        'type=s3,bucket=b,"session_token=SECRET,VALUE"',
        "type=azblob,account_url=u,secret_access_key=SECRETVALUE,oops",
    ],
)
def test_refused_entries_never_quote_credentials(text: str) -> None:
    """gha/s3/azblob entries carry tokens and keys; the refusal must not repeat them."""
    with pytest.raises(CacheOptionError) as info:
        parse_cache_list([text], "cache_to")
    message = str(info.value)
    assert "cache_to[0]" in message
    assert "SECRET" not in message and "VALUE" not in message
    assert "***" in message
