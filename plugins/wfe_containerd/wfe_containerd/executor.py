"""The ``containerd`` step: pull if needed, run one container, stream its output, collect outputs.

The plugin object is what the ``wfe.executors`` entry point names. Importing this module is cheap:
grpc and the client are imported only when a step actually runs, so validating a workflow does not
load them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wfe_containerd.config import (
    ContainerdConfig,
    parse_cpu,
    parse_duration,
    parse_memory,
    validate,
)
from wfe_core.contracts import (
    ExecutionResult,
    ExecutorPlugin,
    JSONValue,
    ProgressEvent,
    StepBody,
    StepContext,
    StepFailed,
)
from wfe_core.process_output import OutputCapture, parse_output_file, process_outputs

if TYPE_CHECKING:
    from wfe_containerd.client import RunResult
    from wfe_containerd.pull import PullProgress
    from wfe_containerd.spec import RunOptions

OUTPUT_FILE_TARGET = "/run/wfe/output"
"""Where ``$WFE_OUTPUT`` points inside the container (a bind-mounted host file)."""


def _describe_timeout(seconds: float) -> str:
    return f"{seconds:g}s"


class ContainerdStep(StepBody):
    """One execution of a containerd step."""

    def __init__(self, config: ContainerdConfig) -> None:
        self.config = config

    async def run(self, ctx: StepContext) -> ExecutionResult:
        from wfe_containerd.errors import ContainerdError
        from wfe_containerd.reference import ReferenceError

        try:
            return await self._run(ctx)
        except (ContainerdError, ReferenceError, ValueError) as exc:
            raise StepFailed(str(exc)) from None

    async def _run(self, ctx: StepContext) -> ExecutionResult:
        from wfe_containerd.client import Client, new_container_id
        from wfe_containerd.connection import TLSConfig
        from wfe_containerd.credentials import Credentials
        from wfe_containerd.oci import parse_platform

        cfg = self.config
        tls = TLSConfig(cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
        timeout = parse_duration(cfg.timeout) if cfg.timeout is not None else None
        if ctx.timeout is not None:
            timeout = ctx.timeout if timeout is None else min(timeout, ctx.timeout)
        options = self._run_options(ctx)
        labels = _labels(ctx)
        credentials = {
            (a.registry or host): Credentials(a.username, a.password)
            for host, a in cfg.registry_auth.items()
        }
        capture = OutputCapture()

        def on_output(stream: str, text: str) -> None:
            capture.feed(stream, text)
            ctx.log(stream, text)

        file_outputs: dict[str, str] = {}

        def on_output_file(path: Path) -> None:
            file_outputs.update(parse_output_file(path))

        async with Client(cfg.containerd_addr, namespace=cfg.namespace, tls=tls) as client:
            image = await client.ensure_image(
                cfg.image,
                policy=cfg.pull,
                snapshotter=cfg.snapshotter,
                credentials=credentials,
                insecure_registries=cfg.insecure_registries,
                progress=_progress_reporter(ctx),
                labels=labels,
                **({"platform": parse_platform(cfg.platform)} if cfg.platform else {}),
            )
            result = await client.run(
                image,
                options,
                container_id=new_container_id(ctx.step_name),
                on_output=on_output,
                timeout=timeout,
                grace_period=parse_duration(cfg.grace_period),
                snapshotter=cfg.snapshotter,
                labels=labels,
                output_file_target=OUTPUT_FILE_TARGET,
                on_output_file=on_output_file,
            )
        outputs: dict[str, JSONValue] = process_outputs(capture, result.exit_code, None)
        outputs.update(file_outputs)
        self._check_result(result, capture, outputs, timeout)
        return ExecutionResult(outputs=outputs)

    def _run_options(self, ctx: StepContext) -> RunOptions:
        """The step config as the client's RunOptions (volume sources resolved and checked)."""
        from wfe_containerd.spec import BindMount, RunOptions

        cfg = self.config
        mounts = []
        for volume in cfg.volumes:
            source = ctx.resolve_path(volume.source)
            if not source.exists():
                raise StepFailed(f"volume source {str(source)!r} does not exist")
            mounts.append(BindMount(str(source), volume.target, volume.readonly))
        args = ["/bin/sh", "-c", cfg.run] if cfg.run is not None else list(cfg.command or [])
        return RunOptions(
            args=args,
            env={**cfg.env, "WFE_OUTPUT": OUTPUT_FILE_TARGET},
            working_dir=cfg.working_dir,
            user=cfg.user,
            mounts=mounts,
            network=cfg.network,
            memory_bytes=parse_memory(cfg.memory) if cfg.memory is not None else None,
            cpus=parse_cpu(cfg.cpu) if cfg.cpu is not None else None,
            hostname=cfg.hostname,
            read_only_rootfs=cfg.read_only_rootfs,
        )

    def _check_result(
        self,
        result: RunResult,
        capture: OutputCapture,
        outputs: dict[str, JSONValue],
        timeout: float | None,
    ) -> None:
        """Raise StepFailed (carrying the outputs) for a timeout, an OOM kill or a non-zero
        exit, in that order: a timed-out or OOM-killed task's exit code says nothing more."""
        cfg = self.config
        if result.timed_out:
            raise StepFailed(
                f"container timed out after {_describe_timeout(timeout or 0)} and was stopped "
                f"(stop signal, then SIGKILL after a {cfg.grace_period} grace period)",
                outputs=outputs,
            )
        if result.oom_killed:
            raise StepFailed(
                f"container was killed by the kernel's OOM killer (out of memory): it exceeded "
                f"its memory limit of {cfg.memory or 'the host'}; raise 'memory' or use less",
                outputs=outputs,
            )
        if result.exit_code != 0:
            tail = capture.tail("stderr", 20)
            message = f"container exited with code {result.exit_code}"
            if tail:
                message += f"; last stderr lines:\n{tail}"
            raise StepFailed(message, outputs=outputs)


def _labels(ctx: StepContext) -> dict[str, str]:
    """What every object of this step carries: owner labels plus workflow and attempt."""
    from wfe_containerd import labels as owner

    return {
        **owner.owner_labels(ctx.run_id, ctx.step_name),
        "wfe.workflow": ctx.workflow_id[:256],
        "wfe.attempt": str(ctx.attempt),
    }


def _progress_reporter(ctx: StepContext) -> Callable[[PullProgress], None]:
    def on_progress(p: PullProgress) -> None:
        ctx.progress(
            ProgressEvent(
                "pull",
                p.digest,
                {
                    # One line per blob: say which blob, not only which image.
                    "name": f"{p.image} {_blob_kind(p.media_type)} "
                    f"{p.digest.partition(':')[2][:12]}",
                    "state": p.status,
                    "current": p.current,
                    "total": p.total,
                    "media_type": p.media_type,
                },
            )
        )

    return on_progress


def _create(config: ContainerdConfig) -> StepBody:
    return ContainerdStep(config)


plugin = ExecutorPlugin(
    name="containerd",
    config_type=ContainerdConfig,
    create=_create,
    validators=(validate,),
    description="Run a command in a container with containerd (pulls the image itself)",
)

__all__ = ["ContainerdStep", "plugin"]


def _blob_kind(media_type: str) -> str:
    """``layer``, ``config``, ``manifest`` or ``index`` for a pull progress line."""
    markers = (
        ("layer", "layer"), ("rootfs", "layer"),  # OCI / Docker layer media types
        ("config", "config"), ("container.image", "config"),
        ("index", "index"), ("manifest.list", "index"), ("manifest", "manifest"),
    )
    for marker, kind in markers:
        if marker in media_type:
            return kind
    return "blob"
