"""Credential resolution and the session Auth service (unit tests, in-process gRPC)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import grpc
import pytest
from wfe_buildkit._pb import auth_pb2, auth_pb2_grpc
from wfe_buildkit.registry_auth import (
    ANONYMOUS,
    AUTH_METHODS,
    CredentialSources,
    DockerConfig,
    RegistryAuthError,
    RegistryCredential,
    auth_service,
    canonical_host,
    credential_from_helper,
    credential_sources,
    load_docker_config,
    load_step_credentials,
    parse_registry_auth,
    resolve_credential,
    unauthorized_hint,
)

PASSWORD = "pw-Zq81-unique-secret"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("Registry.Example.com:443/v2/", "registry.example.com:443"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_canonical_host(raw: str, expected: str) -> None:
    assert canonical_host(raw) == expected


def test_parse_registry_auth_valid() -> None:
    specs = parse_registry_auth(
        {
            "127.0.0.1:5000": {"username": "u", "password_env": "REG_PW"},
            "https://index.docker.io/v1/": {"username": "hub", "password_file": "pw.txt"},
        }
    )
    assert [(s.host, s.username, s.password_env, s.password_file) for s in specs] == [
        ("127.0.0.1:5000", "u", "REG_PW", None),
        ("docker.io", "hub", None, Path("pw.txt")),
    ]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"h": {"username": "u", "password": PASSWORD}}, "inline passwords are not accepted"),
        ({"h": {"username": "u"}}, "exactly one of password_env or password_file"),
        ({"h": {"username": "u", "password_env": "A", "password_file": "f"}}, "exactly one"),
        ({"h": {"password_env": "A"}}, "registry_auth.h.username: required"),
        ({"h": {"username": "u", "password_env": "A", "token": "x"}}, "unknown key(s) token"),
        ({"h": "user:pass"}, "expected a mapping"),
        (
            {
                "docker.io": {"username": "a", "password_env": "A"},
                "registry-1.docker.io": {"username": "b", "password_env": "B"},
            },
            "same registry as registry_auth.docker.io",
        ),
    ],
)
def test_parse_registry_auth_errors(raw: Any, fragment: str) -> None:
    with pytest.raises(RegistryAuthError) as info:
        parse_registry_auth(raw)
    assert fragment in str(info.value)
    assert PASSWORD not in str(info.value)


def test_load_step_credentials_env_and_file(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text(PASSWORD + "\n")
    specs = parse_registry_auth(
        {
            "a.example": {"username": "ua", "password_env": "REG_A"},
            "b.example": {"username": "ub", "password_file": "pw.txt"},
        }
    )
    creds = load_step_credentials(specs, environ={"REG_A": "from-env"}, base_dir=tmp_path)
    assert creds["a.example"] == RegistryCredential("ua", "from-env")
    assert creds["b.example"] == RegistryCredential("ub", PASSWORD)  # newline stripped
    assert PASSWORD not in repr(creds)


def test_load_step_credentials_errors_name_the_source_not_the_value(tmp_path: Path) -> None:
    specs = parse_registry_auth(
        {
            "a.example": {"username": "ua", "password_env": "REG_UNSET"},
            "b.example": {"username": "ub", "password_file": str(tmp_path / "missing")},
        }
    )
    with pytest.raises(RegistryAuthError) as info:
        load_step_credentials(specs, environ={})
    text = str(info.value)
    assert "registry_auth.a.example: environment variable REG_UNSET is not set" in text
    assert f"password_file {tmp_path / 'missing'} does not exist" in text


def test_docker_config_auths_and_identity_token(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": b64("hubuser:" + PASSWORD)},
                    "127.0.0.1:5000": {"auth": b64("local:pw:with:colons")},
                    "tok.example": {"identitytoken": "refresh-token"},
                    "empty.example": {},
                }
            }
        )
    )
    parsed = load_docker_config(config)
    assert parsed.auths["docker.io"] == RegistryCredential("hubuser", PASSWORD)
    assert parsed.auths["127.0.0.1:5000"] == RegistryCredential("local", "pw:with:colons")
    assert parsed.auths["tok.example"] == RegistryCredential("", "refresh-token")
    assert "empty.example" not in parsed.auths
    assert PASSWORD not in repr(parsed)
    # BuildKit asks for registry-1.docker.io
    sources = CredentialSources(docker=parsed)
    assert resolve_credential(sources, "registry-1.docker.io").username == "hubuser"
    assert resolve_credential(sources, "unknown.example") is ANONYMOUS


def test_docker_config_errors(tmp_path: Path) -> None:
    assert load_docker_config(tmp_path / "nope.json") == DockerConfig(path=tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RegistryAuthError, match="not valid JSON"):
        load_docker_config(bad)
    bad.write_text(json.dumps({"auths": {"h": {"auth": "!!" + PASSWORD}}}))
    with pytest.raises(RegistryAuthError) as info:
        load_docker_config(bad)
    assert "auths['h'].auth is not valid base64" in str(info.value)
    assert PASSWORD not in str(info.value)


@pytest.fixture
def fake_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """docker-credential-{good,empty,broken,token} scripts on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scripts = {
        "good": f"""read url; printf '{{"ServerURL":"%s","Username":"helper-user",\
"Secret":"{PASSWORD}"}}' "$url"; echo "$url" >> {tmp_path}/asked""",
        "empty": "read url; echo 'credentials not found in native keychain'; exit 1",
        "broken": "read url; echo 'keychain locked' >&2; exit 3",
        "token": """read url; echo '{"Username":"<token>","Secret":"idtok"}'""",
        "hubonly": """read url; if [ "$url" = "https://index.docker.io/v1/" ]; then \
echo '{"Username":"hub","Secret":"hubpw"}'; else echo 'credentials not found'; exit 1; fi""",
    }
    for name, body in scripts.items():
        path = bindir / f"docker-credential-{name}"
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_credential_helpers(fake_helpers: Path) -> None:
    assert credential_from_helper("good", "reg.example") == RegistryCredential(
        "helper-user", PASSWORD
    )
    assert (fake_helpers / "asked").read_text() == "reg.example\n"
    assert credential_from_helper("empty", "reg.example") is None
    assert credential_from_helper("token", "reg.example") == RegistryCredential("", "idtok")
    assert credential_from_helper("hubonly", "docker.io") == RegistryCredential("hub", "hubpw")
    with pytest.raises(RegistryAuthError, match=r"docker-credential-broken failed for "
                       r"reg.example \(exit 3\): keychain locked"):
        credential_from_helper("broken", "reg.example")
    with pytest.raises(RegistryAuthError, match=r"docker-credential-absent .* is not installed"):
        credential_from_helper("absent", "reg.example")


def test_precedence_step_then_helpers_then_store_then_auths(fake_helpers: Path) -> None:
    docker = DockerConfig(
        auths={
            "a.example": RegistryCredential("from-auths", "x"),
            "b.example": RegistryCredential("from-auths", "x"),
            "c.example": RegistryCredential("from-auths", "x"),
        },
        cred_helpers={"b.example": "token", "d.example": "empty"},
        creds_store="good",
    )
    sources = CredentialSources(step={"a.example": RegistryCredential("step", "s")}, docker=docker)
    assert resolve_credential(sources, "a.example").username == "step"
    assert resolve_credential(sources, "b.example") == RegistryCredential("", "idtok")
    assert resolve_credential(sources, "c.example").username == "helper-user"  # credsStore
    assert resolve_credential(sources, "d.example") is ANONYMOUS  # helper has none
    no_store = CredentialSources(docker=DockerConfig(auths=docker.auths, creds_store="empty"))
    assert resolve_credential(no_store, "c.example").username == "from-auths"


def test_credential_sources_reads_docker_config_env(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"r.example": {"auth": b64("cfg:pw")}}})
    )
    sources = credential_sources(
        {"s.example": {"username": "u", "password_env": "PW"}},
        environ={"DOCKER_CONFIG": str(tmp_path), "PW": "p"},
    )
    assert resolve_credential(sources, "r.example").username == "cfg"
    assert resolve_credential(sources, "s.example") == RegistryCredential("u", "p")


def test_credential_repr_hides_secret() -> None:
    assert PASSWORD not in repr(RegistryCredential("u", PASSWORD))


async def test_auth_servicer_over_grpc(serve: Any, fake_helpers: Path) -> None:
    sources = CredentialSources(
        step={"127.0.0.1:5000": RegistryCredential("wfe", PASSWORD)},
        docker=DockerConfig(cred_helpers={"bad.example": "broken"}),
    )
    service = auth_service(sources)
    assert tuple(service.methods) == AUTH_METHODS
    async with serve(service) as channel:
        stub = auth_pb2_grpc.AuthStub(channel)
        reply = await stub.Credentials(auth_pb2.CredentialsRequest(Host="127.0.0.1:5000"))
        assert (reply.Username, reply.Secret) == ("wfe", PASSWORD)
        reply = await stub.Credentials(auth_pb2.CredentialsRequest(Host="other.example"))
        assert (reply.Username, reply.Secret) == ("", "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetTokenAuthority(auth_pb2.GetTokenAuthorityRequest(Host="x"))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.FetchToken(auth_pb2.FetchTokenRequest(Host="x"))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Credentials(auth_pb2.CredentialsRequest(Host="bad.example"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "docker-credential-broken" in (info.value.details() or "")
    assert service.servicer.hosts_asked == ["127.0.0.1:5000", "other.example", "bad.example"]
    assert service.servicer.origins["127.0.0.1:5000"] == "the step's registry_auth"


async def test_auth_service_replaces_the_core_sessions_builtin(fake_helpers: Path) -> None:
    """Through the core helper's SessionServer(services=...), not a bare server."""
    from wfe_buildkit.session import SessionServer

    service = auth_service(CredentialSources(docker=DockerConfig(creds_store="good")))
    async with SessionServer(services=[service]) as session:
        assert session.methods.count("/moby.filesync.v1.Auth/Credentials") == 1
        channel = grpc.aio.insecure_channel(f"unix:{session.socket_path}")
        try:
            reply = await auth_pb2_grpc.AuthStub(channel).Credentials(
                auth_pb2.CredentialsRequest(Host="reg.example")
            )
        finally:
            await channel.close()
    assert reply.Username == "helper-user"


def test_unauthorized_hint_names_host_and_origin() -> None:
    service = auth_service(CredentialSources())
    assert unauthorized_hint("exit code: 1", service.servicer) is None
    generic = unauthorized_hint("401 Unauthorized", None)
    assert generic is not None and "registry_auth" in generic
    service.servicer._cache["r.example"] = RegistryCredential("bob", PASSWORD)
    service.servicer.origins["r.example"] = "the step's registry_auth"
    hint = unauthorized_hint(
        "pulling from host r.example failed with status code [manifests latest]: "
        "401 Unauthorized",
        service.servicer,
    )
    assert hint is not None
    assert "r.example as bob (from the step's registry_auth)" in hint
    assert PASSWORD not in hint


def test_problems_are_located_per_host() -> None:
    with pytest.raises(RegistryAuthError) as info:
        parse_registry_auth({
            "ok.example": {"username": "u", "password_env": "A"},
            "127.0.0.1:5000": {"username": "u"},
        })
    assert [path for path, _ in info.value.problems] == [("registry_auth", "127.0.0.1:5000")]


def test_missing_creds_store_is_ignored_but_missing_cred_helper_is_an_error(
    fake_helpers: Path, caplog: pytest.LogCaptureFixture
) -> None:
    docker = DockerConfig(
        auths={"a.example": RegistryCredential("from-auths", "x")},
        cred_helpers={"b.example": "absent"},
        creds_store="desktop-not-here",
    )
    sources = CredentialSources(docker=docker)
    assert resolve_credential(sources, "a.example").username == "from-auths"
    assert resolve_credential(sources, "public.example") is ANONYMOUS
    assert "credsStore desktop-not-here is not installed" in caplog.text
    with pytest.raises(RegistryAuthError, match="docker-credential-absent"):
        resolve_credential(sources, "b.example")
