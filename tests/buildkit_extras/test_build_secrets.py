"""Build secrets: parsing, loading, redaction and the session Secrets service (unit tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest
from wfe_buildkit._pb import secrets_pb2, secrets_pb2_grpc
from wfe_buildkit.build_secrets import (
    MAX_SECRET_SIZE,
    SECRETS_METHODS,
    LoadedSecret,
    SecretsConfigError,
    SecretSpec,
    load_secrets,
    parse_secrets,
    redact,
    secrets_service,
)

VALUE = "tok-5bd1-very-secret"


def test_parse_list_form() -> None:
    specs = parse_secrets([{"id": "npmrc", "src": "~/.npmrc"}, {"id": "tok", "env": "TOKEN"}])
    assert specs == (
        SecretSpec(id="npmrc", src=Path("~/.npmrc")),
        SecretSpec(id="tok", env="TOKEN"),
    )
    assert parse_secrets(None) == ()


def test_parse_mapping_form_and_attrs_objects() -> None:
    @attrs.frozen
    class Source:
        file: str | None = None
        env: str | None = None

    specs = parse_secrets({"a": {"env": "A"}, "b": Source(file="/x")})
    assert specs == (SecretSpec(id="a", env="A"), SecretSpec(id="b", src=Path("/x")))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("id=x,src=y", "expected a list"),
        ([{"src": "f"}], "secrets[0].id: required"),
        ([{"id": "a b", "env": "X"}], "may only contain letters"),
        ([{"id": "a", "env": "X"}, {"id": "a", "env": "Y"}], "already declared in secrets[0]"),
        ([{"id": "a"}], "set exactly one of src"),
        ([{"id": "a", "src": "f", "env": "E"}], "set exactly one of src"),
        ([{"id": "a", "path": "f"}], "unknown key(s) path (did you mean src?)"),
        (["a"], "secrets[0]: expected a mapping"),
    ],
)
def test_parse_errors(raw: Any, fragment: str) -> None:
    with pytest.raises(SecretsConfigError) as info:
        parse_secrets(raw)
    assert fragment in str(info.value)


def test_load_env_and_file(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_bytes(b"file-secret\n")
    specs = parse_secrets([{"id": "f", "src": "s.txt"}, {"id": "e", "env": "TOK"}])
    loaded = load_secrets(specs, environ={"TOK": VALUE}, base_dir=tmp_path)
    assert loaded["f"].value == b"file-secret\n"  # unchanged, like buildx
    assert loaded["e"].value == VALUE.encode()
    assert VALUE not in repr(loaded)


def test_load_errors_name_id_and_source_never_value(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_SIZE + 1))
    specs = parse_secrets(
        [
            {"id": "missing", "src": str(tmp_path / "nope")},
            {"id": "dir", "src": str(tmp_path)},
            {"id": "unset", "env": "NOT_SET_ANYWHERE"},
            {"id": "big", "src": str(big)},
        ]
    )
    with pytest.raises(SecretsConfigError) as info:
        load_secrets(specs, environ={})
    text = str(info.value)
    assert f"secret 'missing': src file {tmp_path / 'nope'} does not exist" in text
    assert "secret 'dir': src" in text and "is a directory" in text
    assert "secret 'unset': environment variable NOT_SET_ANYWHERE is not set" in text
    assert "secret 'big':" in text and "at most" in text


def test_redact() -> None:
    secrets = [LoadedSecret("a", VALUE.encode()), LoadedSecret("b", b"line-one\nline-two\n")]
    text = f"#7 [stdout] {VALUE}\n#7 line-two\nabc"
    assert redact(text, secrets) == "#7 [stdout] ***\n#7 ***\nabc"
    assert redact("a b c", [LoadedSecret("short", b"b")]) == "a b c"  # too short to mask


async def test_secrets_servicer_over_grpc(serve: Any) -> None:
    service = secrets_service({"tok": LoadedSecret("tok", VALUE.encode())})
    assert tuple(service.methods) == SECRETS_METHODS
    assert VALUE not in repr(service)
    async with serve(service) as channel:
        stub = secrets_pb2_grpc.SecretsStub(channel)
        reply = await stub.GetSecret(secrets_pb2.GetSecretRequest(ID="tok"))
        assert reply.data == VALUE.encode()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetSecret(secrets_pb2.GetSecretRequest(ID="other"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    details = info.value.details() or ""
    assert "secret 'other' is not declared in the step's secrets (declared: tok)" in details
    assert VALUE not in details
    assert service.servicer.requested == ["tok", "other"]


async def test_secrets_service_through_core_session_server() -> None:
    from wfe_buildkit.session import SessionServer

    service = secrets_service({"tok": LoadedSecret("tok", b"v")})
    async with SessionServer(services=[service]) as session:
        assert "/moby.buildkit.secrets.v1.Secrets/GetSecret" in session.methods
        channel = grpc.aio.insecure_channel(f"unix:{session.socket_path}")
        try:
            reply = await secrets_pb2_grpc.SecretsStub(channel).GetSecret(
                secrets_pb2.GetSecretRequest(ID="tok")
            )
        finally:
            await channel.close()
    assert reply.data == b"v"


def test_problems_are_located_per_entry() -> None:
    with pytest.raises(SecretsConfigError) as info:
        parse_secrets([{"id": "ok", "env": "A"}, {"id": "x"}, {"src": "f"}])
    assert [path for path, _ in info.value.problems] == [("secrets", 1), ("secrets", 2)]
