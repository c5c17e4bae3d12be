"""The ``containerd`` step through ``plugin.create(config).run(ctx)`` against the harness daemon.

Each test ends with a leak check: no container, task, lease, active snapshot or FIFO directory
of ours may remain, whether the step succeeded, failed, timed out or was cancelled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from wfe_containerd.config import ContainerdConfig, RegistryAuth, Volume
from wfe_containerd.executor import plugin
from wfe_containerd.task_io import io_dir_prefix

from tests.containerd.conftest import Recorder, our_leftovers
from tests.harness import RegistryServer, TestImages
from wfe_core.contracts import StepContext, StepFailed

pytestmark = pytest.mark.daemon

MakeCtx = Callable[..., StepContext]
LeakCheck = Callable[[], Awaitable[None]]


async def run_step(cfg: ContainerdConfig, ctx: StepContext) -> dict[str, Any]:
    result = await plugin.create(cfg).run(ctx)  # type: ignore[misc]
    return dict(result.outputs)


class Steps:
    """What every test here needs: configs aimed at the harness daemon and the session's
    namespace, running them (to outputs, to a failure, or in the background), the leak check."""

    def __init__(
        self, address: str, namespace: str, make_ctx: MakeCtx, leak_check: LeakCheck
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.make_ctx = make_ctx
        self.no_leftovers = leak_check

    def config(self, image: str, **fields: Any) -> ContainerdConfig:
        return ContainerdConfig(
            image=image, containerd_addr=self.address, namespace=self.namespace, **fields
        )

    async def run(self, cfg: ContainerdConfig, **ctx: Any) -> dict[str, Any]:
        return await run_step(cfg, self.make_ctx(cfg, **ctx))

    async def fails(self, cfg: ContainerdConfig, **ctx: Any) -> StepFailed:
        with pytest.raises(StepFailed) as info:
            await self.run(cfg, **ctx)
        return info.value

    def start(self, cfg: ContainerdConfig, **ctx: Any) -> asyncio.Future[dict[str, Any]]:
        return asyncio.ensure_future(self.run(cfg, **ctx))


@pytest.fixture
def steps(address: str, namespace: str, make_ctx: MakeCtx, leak_check: LeakCheck) -> Steps:
    return Steps(address, namespace, make_ctx, leak_check)


async def cancelled(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and check that it ends with CancelledError."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_env_volume_workdir_user_and_outputs(
    steps: Steps, test_images: TestImages, recorder: Recorder, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    script = (
        'id -u; id -g; pwd; echo "$GREETING/$STEP_VAR"; cat /data/in.txt; '
        "echo '##wfe[output line_key=from stdout]'; echo file_key=from-file >> \"$WFE_OUTPUT\"; "
        "echo oops >&2"
    )
    cfg = steps.config(
        test_images.ref("rich"),
        run=script,
        env={"STEP_VAR": "set"},
        volumes=[Volume("data", "/data", readonly=True)],
        working_dir="/tmp",
    )
    outputs = await steps.run(cfg)
    lines = outputs["stdout"].splitlines()
    assert lines[:3] == ["1000", "1000", "/tmp"]  # the image's user 'app', resolved
    assert lines[3] == "hello from rich/set"
    assert lines[4] == "from the host"
    assert outputs["exit_code"] == 0
    assert outputs["line_key"] == "from stdout"
    assert outputs["file_key"] == "from-file"
    assert outputs["stderr"] == "oops\n"
    assert "".join(recorder.logs["stdout"]).startswith("1000\n")
    assert "".join(recorder.logs["stderr"]) == "oops\n"
    await steps.no_leftovers()


async def test_readonly_volume_and_rootfs(
    steps: Steps, test_images: TestImages, tmp_path: Path
) -> None:
    cfg = steps.config(
        test_images.ref("busybox"),
        run="touch /data/x 2>&1 || echo ro-vol; touch /x 2>&1 || echo ro-root; hostname; id -u",
        volumes=[Volume(str(tmp_path), "/data", readonly=True)],
        read_only_rootfs=True,
        user="1000:1000",
        hostname="box",
    )
    outputs = await steps.run(cfg)
    assert "ro-vol" in outputs["stdout"] and "ro-root" in outputs["stdout"]
    assert outputs["stdout"].splitlines()[-2:] == ["box", "1000"]
    await steps.no_leftovers()


async def test_network_none_has_only_loopback(steps: Steps, test_images: TestImages) -> None:
    cfg = steps.config(test_images.ref("busybox"), command=["cat", "/proc/net/dev"])
    outputs = await steps.run(cfg)
    interfaces = [line.split(":")[0].strip() for line in outputs["stdout"].splitlines()[2:]]
    assert interfaces == ["lo"]
    host = steps.config(
        test_images.ref("busybox"), network="host", command=["cat", "/proc/net/dev"]
    )
    outputs = await steps.run(host)
    assert len(outputs["stdout"].splitlines()[2:]) > 1
    await steps.no_leftovers()


async def test_nonzero_exit_fails_with_stderr_tail(steps: Steps, test_images: TestImages) -> None:
    cfg = steps.config(test_images.ref("busybox"), run="echo out; echo 'it broke' >&2; exit 7")
    failure = await steps.fails(cfg)
    assert "exited with code 7" in failure.message
    assert "it broke" in failure.message
    assert failure.outputs["exit_code"] == 7
    assert failure.outputs["stdout"] == "out\n"
    await steps.no_leftovers()


async def test_memory_limit_oom_is_reported(steps: Steps, test_images: TestImages) -> None:
    cfg = steps.config(
        test_images.ref("busybox"),
        memory="16m",
        cpu="0.5",
        run="x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
    )
    failure = await steps.fails(cfg)
    assert "OOM" in failure.message
    assert "16m" in failure.message
    await steps.no_leftovers()


async def test_timeout_stops_within_grace(steps: Steps, test_images: TestImages) -> None:
    cfg = steps.config(
        test_images.ref("busybox"), command=["sleep", "1000"], timeout="2s", grace_period="1s"
    )
    start = time.monotonic()
    failure = await steps.fails(cfg)
    elapsed = time.monotonic() - start
    assert "timed out" in failure.message
    assert elapsed < 2 + 1 + 2, elapsed
    await steps.no_leftovers()


async def test_context_timeout_applies_too(steps: Steps, test_images: TestImages) -> None:
    # A shell that traps TERM exits within the grace period, with 143.
    cfg = steps.config(
        test_images.ref("busybox"),
        grace_period="5s",
        run="trap 'echo got-term; exit 143' TERM; while true; do sleep 0.1; done",
    )
    start = time.monotonic()
    failure = await steps.fails(cfg, timeout=1.0)
    assert time.monotonic() - start < 4
    assert failure.outputs["exit_code"] == 143
    assert "got-term" in str(failure.outputs["stdout"])
    await steps.no_leftovers()


async def test_cancellation_cleans_up(
    steps: Steps, test_images: TestImages, recorder: Recorder
) -> None:
    cfg = steps.config(
        test_images.ref("busybox"), run="echo started; exec sleep 1000", grace_period="1s"
    )
    task = steps.start(cfg)
    for _ in range(100):
        if recorder.logs["stdout"]:
            break
        await asyncio.sleep(0.05)
    assert recorder.logs["stdout"] == ["started\n"]
    start = time.monotonic()
    await cancelled(task)
    assert time.monotonic() - start < 1 + 3
    await steps.no_leftovers()


async def test_pull_with_htpasswd_auth(
    steps: Steps, test_images: TestImages, auth_registry: RegistryServer, recorder: Recorder
) -> None:
    ref = test_images.ref("busybox", auth=True)

    def with_password(password: str, **fields: Any) -> ContainerdConfig:
        auth = RegistryAuth(auth_registry.username, password)
        return steps.config(ref, pull="always", registry_auth={auth_registry.host: auth}, **fields)

    cfg = with_password(auth_registry.password, command=["echo", "authed"])
    outputs = await steps.run(cfg)
    assert outputs["stdout"] == "authed\n"
    assert any(e.kind == "pull" for e in recorder.events)
    assert auth_registry.password not in repr(cfg)
    failure = await steps.fails(with_password("nope", command=["true"]))
    assert auth_registry.host in failure.message
    assert "nope" not in failure.message
    await steps.no_leftovers()


async def test_pull_never_with_missing_image(steps: Steps, registry: RegistryServer) -> None:
    image = f"{registry.host}/wfe/not-pulled-anywhere:1"
    failure = await steps.fails(steps.config(image, command=["true"], pull="never"))
    assert image in failure.message
    assert "'never'" in failure.message
    await steps.no_leftovers()


async def test_missing_socket_is_a_clear_error(make_ctx: MakeCtx, tmp_path: Path) -> None:
    cfg = ContainerdConfig(
        image="busybox", command=["true"], containerd_addr=str(tmp_path / "nope.sock")
    )
    with pytest.raises(StepFailed) as info:
        await run_step(cfg, make_ctx(cfg))
    assert "nope.sock" in info.value.message
    assert "does not exist" in info.value.message


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8])
async def test_cancellation_at_any_point_leaves_nothing(
    delay: float, steps: Steps, test_images: TestImages
) -> None:
    """Cancel during pull, container creation, task creation or the run: nothing remains."""
    cfg = steps.config(
        test_images.ref("rich"), pull="always", command=["sleep", "1000"], grace_period="0.5s"
    )
    task = steps.start(cfg)
    await asyncio.sleep(delay)
    await cancelled(task)
    await steps.no_leftovers()


async def test_twenty_mixed_runs_leave_nothing(steps: Steps, test_images: TestImages) -> None:
    """Success, failure, timeout and cancellation, all at once: afterwards nothing of ours."""
    image = test_images.ref("busybox")
    kinds = ["ok", "fail", "timeout", "cancel"] * 5
    configs = {
        "ok": steps.config(image, run="echo fine"),
        "fail": steps.config(image, run="echo bad >&2; exit 3"),
        "timeout": steps.config(
            image, command=["sleep", "1000"], timeout="1s", grace_period="0.5s"
        ),
        "cancel": steps.config(image, command=["sleep", "1000"], grace_period="0.5s"),
    }
    tasks = [steps.start(configs[k], step=f"{k}{i}") for i, k in enumerate(kinds)]
    await asyncio.sleep(1.5)
    for kind, task in zip(kinds, tasks, strict=True):
        if kind == "cancel":
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for kind, result in zip(kinds, results, strict=True):
        if kind == "ok":
            assert isinstance(result, dict) and result["stdout"] == "fine\n"
        elif kind == "cancel":
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert isinstance(result, StepFailed), result
            assert ("timed out" if kind == "timeout" else "code 3") in result.message
    await steps.no_leftovers()


async def test_sigint_to_the_process_cleans_up(
    address: str,
    namespace: str,
    test_images: TestImages,
    tmp_path: Path,
) -> None:
    """Ctrl-C (SIGINT) to a process running a step: asyncio cancels it and cleanup runs."""
    ns = f"{namespace}-sigint"
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from wfe_containerd.config import ContainerdConfig
        from wfe_containerd.executor import plugin
        from wfe_core.contracts import StepContext
        cfg = ContainerdConfig(image={test_images.ref("busybox")!r}, containerd_addr={address!r},
                               namespace={ns!r}, run="echo started; exec sleep 1000",
                               grace_period="1s")
        ctx = StepContext(run_id="r", workflow_id="w", step_name="s", attempt=1, config=cfg,
                          inputs={{}}, outputs={{}}, workspace=Path({str(tmp_path)!r}),
                          base_dir=Path({str(tmp_path)!r}),
                          log_sink=lambda s, t: print(t, end="", flush=True))
        asyncio.run(plugin.create(cfg).run(ctx))
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    left = await our_leftovers(address, ns)
    left = [item for item in left if not item.startswith("dir ")]
    assert not left, left
    assert not list(Path(tempfile.gettempdir()).glob(io_dir_prefix(proc.pid) + "*"))
