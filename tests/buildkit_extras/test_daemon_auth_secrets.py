"""Registry auth and build secrets against Docker Engine's embedded BuildKit (harness).

The core client's public API (``solve_opt`` + ``Client.solve``) with this package's Auth and
Secrets services plugged in through ``SolveOpt.services``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from wfe_buildkit.build_secrets import load_secrets, parse_secrets, redact, secrets_service
from wfe_buildkit.client import BuildFailed, Client, Export
from wfe_buildkit.registry_auth import auth_service, credential_sources, unauthorized_hint

from tests.buildkit_extras.daemon import Recorded, build, docker_address
from tests.harness import DockerDaemon, RegistryServer, TestImages

pytestmark = pytest.mark.daemon

SECRET = "wfe-secret-4a7c0d21-never-print"


def context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


async def test_from_authenticated_registry(
    docker_daemon: DockerDaemon, auth_registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    image = test_images.ref("busybox", auth=True)
    ctx = context(tmp_path, f"FROM {image}\nRUN echo built > /built\n")
    sources = credential_sources(
        {auth_registry.host: {"username": auth_registry.username, "password_env": "WFE_T_PW"}},
        environ={"WFE_T_PW": auth_registry.password},
        use_docker_config=False,
    )
    service = auth_service(sources)
    recorder = Recorded()
    async with Client(docker_address(docker_daemon.socket)) as client:
        await build(client, ctx, [Export.local(tmp_path / "out")], services=[service],
                    no_cache=True, recorder=recorder)
    assert (tmp_path / "out" / "built").read_text() == "built\n"
    assert auth_registry.host in service.servicer.hosts_asked
    assert auth_registry.password not in recorder.text


async def test_wrong_password_fails_unauthorized(
    docker_daemon: DockerDaemon, auth_registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    image = test_images.ref("busybox", auth=True)
    ctx = context(tmp_path, f"FROM {image}\nRUN true\n")
    wrong = "definitely-wrong-password"
    service = auth_service(
        credential_sources(
            {auth_registry.host: {"username": auth_registry.username, "password_env": "PW"}},
            environ={"PW": wrong},
            use_docker_config=False,
        )
    )
    async with Client(docker_address(docker_daemon.socket)) as client:
        with pytest.raises(BuildFailed) as info:
            await build(client, ctx, [Export.local(tmp_path / "out")], services=[service],
                        no_cache=True)
    message = str(info.value)
    assert "401 Unauthorized" in message
    assert wrong not in message
    hint = unauthorized_hint(message, service.servicer)
    assert hint is not None
    expected = f"{auth_registry.host} as {auth_registry.username} (from the step's registry_auth)"
    assert expected in hint
    assert wrong not in hint


async def test_secret_mount_and_no_leak(
    docker_daemon: DockerDaemon, registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    image = test_images.ref("busybox")
    secret_file = tmp_path / "token.txt"
    secret_file.write_text(SECRET)
    ctx = context(
        tmp_path,
        f"FROM {image}\n"
        "RUN --mount=type=secret,id=tok --mount=type=secret,id=envtok "
        "sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok.sha && "
        "sha256sum /run/secrets/envtok | cut -d' ' -f1 > /envtok.sha && "
        "cat /run/secrets/envtok\n",  # prints the env secret into the build log on purpose
    )
    loaded = load_secrets(
        parse_secrets([{"id": "tok", "src": str(secret_file)}, {"id": "envtok", "env": "TOK"}]),
        environ={"TOK": SECRET + "-env"},
    )
    service = secrets_service(loaded)
    recorder = Recorded()
    async with Client(docker_address(docker_daemon.socket)) as client:
        result = await build(client, ctx, [Export.local(tmp_path / "out")],
                             services=[service], no_cache=True, recorder=recorder)
    out = tmp_path / "out"
    assert (out / "tok.sha").read_text().strip() == hashlib.sha256(SECRET.encode()).hexdigest()
    assert (out / "envtok.sha").read_text().strip() == hashlib.sha256(
        (SECRET + "-env").encode()
    ).hexdigest()
    # Secret mounts leave nothing in the image.
    assert not (out / "run" / "secrets" / "tok").exists()
    assert sorted(service.servicer.requested) == ["envtok", "tok"]
    # The RUN printed the env secret: the raw log has it, the redacted log does not.
    log = "\n".join(recorder.logs())
    assert SECRET + "-env" in log
    assert SECRET not in redact(log, loaded.values())
    assert SECRET not in redact(recorder.text, loaded.values())
    assert SECRET not in repr(result)


async def test_undeclared_required_secret(
    docker_daemon: DockerDaemon, registry: RegistryServer, test_images: TestImages,
    tmp_path: Path,
) -> None:
    image = test_images.ref("busybox")
    ctx = context(
        tmp_path, f"FROM {image}\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n"
    )
    service = secrets_service({})
    async with Client(docker_address(docker_daemon.socket)) as client:
        with pytest.raises(BuildFailed) as info:
            await build(client, ctx, [Export.local(tmp_path / "out")], services=[service],
                        no_cache=True)
    assert "secret nope not found" in str(info.value)
    assert service.servicer.requested == ["nope"]


@pytest.mark.parametrize("origin", ["auths", "credsStore"])
async def test_from_authenticated_registry_with_docker_config(
    docker_daemon: DockerDaemon, auth_registry: RegistryServer, test_images: TestImages,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: str,
) -> None:
    """Credentials from ~/.docker/config.json: base64 ``auths``, or a credential helper."""
    import base64
    import json
    import os

    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    config: dict[str, object]
    if origin == "auths":
        token = base64.b64encode(
            f"{auth_registry.username}:{auth_registry.password}".encode()
        ).decode()
        config = {"auths": {f"http://{auth_registry.host}": {"auth": token}}}
    else:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        helper = bindir / "docker-credential-wfetest"
        answer = json.dumps({"Username": auth_registry.username, "Secret": auth_registry.password})
        helper.write_text(f"#!/bin/sh\nread url\necho '{answer}'\n")
        helper.chmod(0o700)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        config = {"credsStore": "wfetest"}
    (config_dir / "config.json").write_text(json.dumps(config))
    service = auth_service(credential_sources(None, environ={"DOCKER_CONFIG": str(config_dir)}))
    image = test_images.ref("busybox", auth=True)
    ctx = context(tmp_path, f"FROM {image}\nRUN echo {origin} > /origin\n")
    async with Client(docker_address(docker_daemon.socket)) as client:
        await build(client, ctx, [Export.local(tmp_path / "out")], services=[service],
                    no_cache=True)
    assert (tmp_path / "out" / "origin").read_text() == f"{origin}\n"
    assert origin in service.servicer.origins[auth_registry.host]
