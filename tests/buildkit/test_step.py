"""The ``buildkit`` step via ``plugin.create(config).run(ctx)`` with a hand-built StepContext."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from wfe_buildkit.config import BuildkitConfig, RegistryAuth, SecretEntry
from wfe_buildkit.executor import plugin

from tests.buildkit.trees import make_tree, snapshot
from tests.harness import RegistryServer
from wfe_core.contracts import ProgressEvent, StepContext, StepFailed

pytestmark = pytest.mark.daemon


def _ctx(base: Path, config: BuildkitConfig, sink: list[tuple[str, str]],
         progress: list[ProgressEvent]) -> StepContext:
    return StepContext(
        run_id="r1",
        workflow_id="w",
        step_name="build",
        attempt=1,
        config=config,
        inputs={},
        outputs={},
        workspace=base / "ws",
        base_dir=base,
        log_sink=lambda stream, text: sink.append((stream, text)),
        progress_sink=progress.append,
    )


async def _run(base: Path, config: BuildkitConfig) -> tuple[dict[str, object], list, list]:
    sink: list[tuple[str, str]] = []
    progress: list[ProgressEvent] = []
    result = await plugin.create(config).run(_ctx(base, config, sink, progress))  # type: ignore[misc]
    return dict(result.outputs), sink, progress


@pytest.fixture
def project(tmp_path: Path, busybox: str) -> Path:
    make_tree(
        tmp_path / "app",
        {
            "Dockerfile": f"FROM {busybox}\nCOPY . /ctx\nRUN echo step-log-line && ls /ctx\n",
            "main.sh": ("exec", "#!/bin/sh\necho main\n"),
            "lib/util.txt": "util\n",
            "link": ("link", "lib/util.txt"),
        },
    )
    return tmp_path


async def test_local_and_tar_outputs(project: Path, bk_address: str) -> None:
    config = BuildkitConfig(
        context="app", buildkit_addr=bk_address, network="none", no_cache=True,
        output_type="local", output_dest="out",
    )
    outputs, sink, progress = await _run(project, config)
    assert outputs["output_dest"] == str(project / "out")
    assert outputs["tags"] == []
    assert snapshot(project / "out" / "ctx") == snapshot(project / "app")
    assert "#" in str(outputs["stderr"]) and "step-log-line" in str(outputs["stdout"])
    assert any(stream == "stdout" and "step-log-line" in text for stream, text in sink)
    vertex_states = {e.data.get("state") for e in progress if e.kind == "vertex"}
    assert {"started", "completed"} <= vertex_states

    tar_config = BuildkitConfig(
        context="app", buildkit_addr=bk_address, network="none",
        output_type="tar", output_dest="out.tar",
    )
    outputs, _, _ = await _run(project, tar_config)
    with tarfile.open(outputs["output_dest"]) as tar:  # type: ignore[arg-type]
        assert "ctx/main.sh" in {m.name.lstrip("./") for m in tar.getmembers()}


async def test_image_with_push_outputs_registry_digest(
    project: Path, bk_address: str, registry: RegistryServer
) -> None:
    tag = f"{registry.host}/wfe/step:1"
    config = BuildkitConfig(
        context="app", dockerfile="app/Dockerfile", buildkit_addr=bk_address,
        network="none", tags=[tag], push=True,
    )
    outputs, _, _ = await _run(project, config)
    digest = outputs["digest"]
    assert isinstance(digest, str) and digest.startswith("sha256:")
    assert outputs["pushed"] == {tag: digest}
    assert outputs["tags"] == [tag]
    assert outputs["config_digest"] != digest  # image ID vs manifest digest


async def test_failed_run_is_step_failed_with_log(
    tmp_path: Path, bk_address: str, busybox: str
) -> None:
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\nRUN echo boom-output; exit 7\n"})
    config = BuildkitConfig(buildkit_addr=bk_address, network="none")
    with pytest.raises(StepFailed) as info:
        await _run(tmp_path, config)
    assert "exit code 7" in info.value.message and "Dockerfile:2" in info.value.message
    assert "boom-output" in str(info.value.outputs["stdout"])


async def test_step_timeout_cancels(
    tmp_path: Path, bk_address: str, busybox: str, no_session_leaks: object
) -> None:
    make_tree(tmp_path, {"Dockerfile": f"FROM {busybox}\nRUN sleep 30\n"})
    config = BuildkitConfig(buildkit_addr=bk_address, network="none", no_cache=True,
                            timeout="1500ms")
    with pytest.raises(StepFailed, match="timed out after 1500ms; it was cancelled"):
        await _run(tmp_path, config)


async def test_wrong_address_is_step_failed(tmp_path: Path) -> None:
    make_tree(tmp_path, {"Dockerfile": "FROM scratch\n"})
    config = BuildkitConfig(buildkit_addr="docker+unix:///nonexistent.sock")
    with pytest.raises(StepFailed, match="cannot reach BuildKit at docker\\+unix:///nonexistent"):
        await _run(tmp_path, config)


async def test_push_with_registry_auth_from_env(
    project: Path, bk_address: str, auth_registry: RegistryServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WFE_TEST_REG_PW", auth_registry.password)
    tag = f"{auth_registry.host}/wfe/step-auth:1"
    config = BuildkitConfig(
        context="app", buildkit_addr=bk_address, network="none", tags=[tag], push=True,
        registry_auth={
            auth_registry.host: RegistryAuth(auth_registry.username, password_env="WFE_TEST_REG_PW")
        },
    )
    outputs, sink, _ = await _run(project, config)
    assert str(outputs["digest"]).startswith("sha256:")
    assert auth_registry.password not in repr(outputs) + repr(sink)


async def test_secret_is_served_and_redacted(
    tmp_path: Path, bk_address: str, busybox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = "s3cr3t-value-for-the-build"
    monkeypatch.setenv("WFE_TEST_SECRET", value)
    make_tree(
        tmp_path,
        {
            "Dockerfile": (
                f"FROM {busybox}\n"
                "RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len "
                "&& cat /run/secrets/tok\n"
            )
        },
    )
    config = BuildkitConfig(
        buildkit_addr=bk_address, network="none", no_cache=True, output_type="local",
        output_dest="out", secrets=[SecretEntry("tok", env="WFE_TEST_SECRET")],
    )
    outputs, sink, _ = await _run(tmp_path, config)
    assert (tmp_path / "out" / "len").read_text().strip() == str(len(value))
    assert value not in repr(outputs) + repr(sink)
    assert "***" in str(outputs["stdout"])
