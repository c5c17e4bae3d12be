"""BuildkitConfig structuring and the step's validators."""

from __future__ import annotations

from pathlib import Path

import cattrs
import pytest
from wfe_buildkit.address import parse_address
from wfe_buildkit.config import (
    BuildkitConfig,
    RegistryAuth,
    SecretEntry,
    SSHEntry,
    parse_duration,
    valid_reference,
)
from wfe_buildkit.errors import InvalidRequest
from wfe_buildkit.executor import plugin

from wfe_core.contracts import ValidationContext


def _vc(base: Path) -> ValidationContext:
    return ValidationContext(file="wf.yaml", workflow_id="w", step_name="build", base_dir=base)


def _codes(config: BuildkitConfig, base: Path) -> list[str]:
    vc = _vc(base)
    return [d.code for v in plugin.validators for d in v(config, vc)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return tmp_path


def test_structure_from_yaml_shape() -> None:
    converter = cattrs.Converter(forbid_extra_keys=True)
    config = converter.structure(
        {
            "context": ".",
            "tags": ["127.0.0.1:5000/app:1"],
            "build_args": {"A": "1"},
            "registry_auth": {"127.0.0.1:5000": {"username": "u", "password_env": "REG_PW"}},
            "secrets": [{"id": "token", "env": "TOKEN"}, {"id": "npmrc", "src": "npmrc"}],
            "ssh": [{"id": "default", "agent": True}],
            "cache_from": ["127.0.0.1:5000/app:cache"],
            "cache_to": ["type=inline"],
            "tls": {"ca": "ca.pem"},
            "timeout": 30,
        },
        BuildkitConfig,
    )
    assert config.registry_auth["127.0.0.1:5000"] == RegistryAuth("u", password_env="REG_PW")
    assert config.secrets[1] == SecretEntry("npmrc", src="npmrc")
    assert config.ssh == [SSHEntry("default", agent=True)]
    assert config.timeout == "30"
    inline = converter.structure(
        {"registry_auth": {"h": {"username": "u", "password": "inline-pw"}}}, BuildkitConfig
    )
    assert "inline-pw" not in repr(inline)


def test_valid_config_has_no_diagnostics(project: Path) -> None:
    config = BuildkitConfig(tags=["127.0.0.1:5000/app:1"], push=True, output_type="image")
    assert _codes(config, project) == []


@pytest.mark.parametrize(
    ("config", "code"),
    [
        (BuildkitConfig(push=True), "BK001"),
        (BuildkitConfig(output_type="zip"), "BK002"),
        (BuildkitConfig(output_type="local"), "BK003"),
        (BuildkitConfig(output_type="tar"), "BK003"),
        (BuildkitConfig(tags=["Bad Tag"]), "BK005"),
        (BuildkitConfig(network="bridge"), "BK006"),
        (BuildkitConfig(buildkit_addr="http://x"), "BK007"),
        (BuildkitConfig(context="missing"), "BK008"),
        (BuildkitConfig(dockerfile="nope/Dockerfile"), "BK008"),
        (BuildkitConfig(timeout="soon"), "BK009"),
        (BuildkitConfig(registry_auth={"h": RegistryAuth("u")}), "BK010"),
        (BuildkitConfig(registry_auth={"h": RegistryAuth("u", password="x")}), "BK010"),
        (BuildkitConfig(secrets=[SecretEntry("x")]), "BK010"),
        (BuildkitConfig(secrets=[SecretEntry("x", src="a", env="B")]), "BK010"),
        (BuildkitConfig(ssh=[SSHEntry("k")]), "BK010"),
        (BuildkitConfig(cache_from=["type=gha"]), "BK011"),
        (BuildkitConfig(cache_to=["type=registry"]), "BK011"),
    ],
)
def test_validators(project: Path, config: BuildkitConfig, code: str) -> None:
    assert code in _codes(config, project)


def test_tls_files_checked(project: Path) -> None:
    from wfe_buildkit.config import TLSSettings

    config = BuildkitConfig(buildkit_addr="tcp://127.0.0.1:1234", tls=TLSSettings(ca="ca.pem"))
    assert _codes(config, project) == ["BK004"]
    (project / "ca.pem").write_text("x")
    assert _codes(config, project) == []
    unix = BuildkitConfig(buildkit_addr="unix:///x.sock", tls=TLSSettings(ca="ca.pem"))
    assert "BK004" in _codes(unix, project)


def test_references_are_tolerated(project: Path) -> None:
    config = BuildkitConfig(
        context="${{ inputs.ctx }}",
        tags=["127.0.0.1:5000/app:${{ inputs.tag }}"],
        output_type="${{ inputs.kind }}",
        network="${{ inputs.net }}",
        timeout="${{ inputs.t }}",
    )
    assert _codes(config, project) == []


def test_diagnostic_points_at_key(project: Path) -> None:
    vc = ValidationContext(
        file="wf.yaml", workflow_id="w", step_name="b", base_dir=project,
        locator=lambda path: (10, 3) if path == ("tags", 0) else (1, 1),
    )
    diags = [d for v in plugin.validators for d in v(BuildkitConfig(tags=["UPPER"]), vc)]
    assert str(diags[0]).startswith("wf.yaml:10:3: error[BK005]: tag 'UPPER'")


def test_durations_and_references() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("10m") == 600
    assert parse_duration("3") == 3
    assert valid_reference("127.0.0.1:5000/wfe/app:1.0")
    assert not valid_reference("app:")


@pytest.mark.parametrize(
    ("text", "kind", "path"),
    [
        ("unix:///run/buildkit/buildkitd.sock", "unix", "/run/buildkit/buildkitd.sock"),
        ("docker+unix:///tmp/d.sock", "docker", "/tmp/d.sock"),
        ("tcp://127.0.0.1:1234", "tcp", ""),
    ],
)
def test_addresses(text: str, kind: str, path: str) -> None:
    address = parse_address(text)
    assert address.kind == kind and address.path == path


def test_address_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUILDKIT_HOST", raising=False)
    assert parse_address(None).path == "/run/buildkit/buildkitd.sock"
    monkeypatch.setenv("BUILDKIT_HOST", "tcp://10.0.0.1:99")
    assert parse_address(None).port == 99
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/x.sock")
    assert parse_address("docker://").path == "/tmp/x.sock"
    monkeypatch.delenv("DOCKER_HOST")
    assert parse_address("docker://").path == "/var/run/docker.sock"
    for bad in ("http://x", "tcp://nohost", "unix://relative", "ftp://a"):
        with pytest.raises(InvalidRequest):
            parse_address(bad)
