"""The ``buildkit`` step: a Dockerfile build through the native client, as a wfe executor.

The plugin object is cheap to import (no grpc): the client is imported when a step runs. The
step resolves relative paths against the workflow's directory, picks the exporter from
``output_type`` (``image`` means ``moby`` on Docker Engine, like buildx does), streams the build
log into the step log (progress lines on stderr, RUN output on its own stream) and structured
vertex events to the live display, and returns ``digest``, ``tags``, ``config_digest``,
``output_dest``, ``stdout`` and ``stderr``. ``push: true`` against Docker Engine exports with
``moby`` and then pushes each tag through the Engine API; ``digest`` is then the manifest digest
the registry holds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfe_buildkit.config import VALIDATORS, BuildkitConfig, parse_duration
from wfe_core.contracts import (
    ExecutionResult,
    ExecutorPlugin,
    JSONValue,
    ProgressEvent,
    StepBody,
    StepContext,
    StepFailed,
)

if TYPE_CHECKING:  # the plugin module must stay importable without grpc
    from wfe_buildkit.address import TLSConfig
    from wfe_buildkit.client import Client
    from wfe_buildkit.registry_auth import CredentialSources
    from wfe_buildkit.solve import Export
    from wfe_buildkit.ssh_forward import SSHForwarding, SSHSpec

STREAM_CAP = 1024 * 1024


class _Capture:
    """The tail (at most ``STREAM_CAP`` characters) of one output stream."""

    def __init__(self) -> None:
        self.parts: collections.deque[str] = collections.deque()
        self.size = 0
        self.dropped = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        while self.size > STREAM_CAP and len(self.parts) > 1:
            gone = self.parts.popleft()
            self.size -= len(gone)
            self.dropped += len(gone)

    def text(self, stream: str) -> str:
        body = "".join(self.parts)
        if self.dropped:
            return f"[wfe: {self.dropped} characters of {stream} truncated]\n{body}"
        return body


class BuildkitStep(StepBody):
    """One execution of a ``buildkit`` step."""

    def __init__(self, config: BuildkitConfig) -> None:
        self.config = config

    async def run(self, ctx: StepContext) -> ExecutionResult:
        config = ctx.config if isinstance(ctx.config, BuildkitConfig) else self.config
        streams = {"stdout": _Capture(), "stderr": _Capture()}

        def log(stream: str, line: str) -> None:
            streams[stream].add(line + "\n")
            ctx.log(stream, line + "\n")

        def outputs(**extra: JSONValue) -> dict[str, JSONValue]:
            out: dict[str, JSONValue] = dict(extra)
            out["stdout"] = streams["stdout"].text("stdout")
            out["stderr"] = streams["stderr"].text("stderr")
            return out

        from wfe_buildkit.errors import BuildkitError

        timeout = parse_duration(config.timeout) if config.timeout else None
        try:
            async with asyncio.timeout(timeout):
                result = await _build(config, ctx, log)
        except TimeoutError:
            message = (
                f"build timed out after {config.timeout}; it was cancelled on the daemon"
            )
            log("stderr", f"wfe: {message}")
            raise StepFailed(message, outputs=outputs()) from None
        except BuildkitError as exc:
            raise StepFailed(str(exc), outputs=outputs()) from None
        return ExecutionResult(outputs=outputs(**result))


def _emit_progress(
    ctx: StepContext, event: Any, clean: Callable[[str], str] = lambda text: text
) -> None:
    """Forward a build event to the live display; ``clean`` masks secret values in its text,
    as for log lines (a vertex name is the RUN's command line, an error the daemon's text)."""
    from wfe_buildkit.progress import TransferEvent, VertexEvent

    if isinstance(event, VertexEvent):
        data: dict[str, JSONValue] = {
            "name": clean(event.name),
            "state": event.state,
            "number": event.number,
            "cached": event.state == "cached",
        }
        if event.error:
            data["error"] = clean(event.error)
        if event.duration is not None:
            data["duration"] = round(event.duration, 3)
        ctx.progress(ProgressEvent("vertex", event.digest, data))
    elif isinstance(event, TransferEvent):
        ctx.progress(
            ProgressEvent(
                "vertex_status",
                f"{event.digest}/{event.id}",
                {
                    "vertex": event.digest,
                    "name": event.id,
                    "current": event.current,
                    "total": event.total,
                    "completed": event.completed,
                },
            )
        )


async def _build(config: BuildkitConfig, ctx: StepContext, log: Any) -> dict[str, JSONValue]:
    """Resolve the session plug-ins, run the build, push; the caller maps errors to StepFailed.

    Credentials, secrets and SSH keys are all read before the daemon is contacted, so a missing
    variable or file fails the step up front; the private ssh-agents started for ``ssh: paths``
    are stopped whatever happens after they started.
    """
    from wfe_buildkit.build_secrets import load_secrets, parse_secrets, redact, secrets_service
    from wfe_buildkit.cache_options import resolve_local_paths
    from wfe_buildkit.client import Client, render_plain
    from wfe_buildkit.errors import BuildFailed, BuildkitError, UnsupportedByDaemon
    from wfe_buildkit.registry_auth import auth_service, credential_sources, unauthorized_hint
    from wfe_buildkit.ssh_forward import parse_ssh, ssh_service

    sources = await asyncio.to_thread(
        credential_sources, config.registry_auth or None, base_dir=ctx.base_dir
    )
    auth = auth_service(sources)
    loaded = load_secrets(parse_secrets(config.secrets or None), base_dir=ctx.base_dir)
    secret_values = list(loaded.values())
    services: list[Any] = [auth]
    if loaded:
        services.append(secrets_service(loaded))
    ssh_specs = parse_ssh(config.ssh or None)
    forwarding = await _start_forwarding(ssh_specs, ctx.base_dir)

    def clean(text: str) -> str:
        return redact(text, secret_values) if secret_values else text

    def progress(event: Any) -> None:
        _emit_progress(ctx, event, clean)
        rendered = render_plain(event)
        if rendered is not None:
            log(rendered[0], clean(rendered[1]))

    dest = ctx.resolve_path(config.output_dest) if config.output_dest else None
    try:
        if ssh_specs:
            services.append(ssh_service(forwarding))
        async with Client(config.buildkit_addr, tls=_tls_settings(config, ctx)) as client:
            output_type = config.output_type
            if client.is_docker and output_type == "image":
                output_type = "moby"
            if not client.is_docker and output_type == "moby":
                raise UnsupportedByDaemon(
                    "output_type 'moby' exists only on Docker Engine (docker:// addresses); "
                    "use 'image' with buildkitd"
                )
            export = _export_for(output_type, config, dest)
            try:
                result = await client.build(
                    ctx.resolve_path(config.context),
                    dockerfile=ctx.resolve_path(config.dockerfile) if config.dockerfile else None,
                    target=config.target,
                    build_args=config.build_args,
                    labels=config.labels,
                    platforms=config.platforms,
                    no_cache=config.no_cache,
                    network=config.network,
                    exports=[export],
                    # local cache directories are client paths: resolved like every path
                    cache_from=resolve_local_paths(
                        list(config.cache_from), "cache_from", ctx.resolve_path
                    ),
                    cache_to=resolve_local_paths(
                        list(config.cache_to), "cache_to", ctx.resolve_path
                    ),
                    services=services,
                    progress=progress,
                )
            except BuildFailed as failure:
                hint = unauthorized_hint(failure.daemon_message, auth.servicer)
                text = clean(str(failure))
                raise BuildkitError(f"{text}\nhint: {hint}" if hint else text) from None
            digest = result.digest
            pushed: dict[str, str] = {}
            if config.push and client.is_docker:
                pushed = await _push_through_engine(client, config.tags, sources, log)
                digest = pushed[config.tags[0]] if config.tags else digest
    finally:
        forwarding.close()
    out: dict[str, JSONValue] = {"tags": list(config.tags)}
    if digest:
        out["digest"] = digest
    if result.config_digest:
        out["config_digest"] = result.config_digest
    if dest is not None:
        out["output_dest"] = str(dest)
    if pushed:
        out["pushed"] = dict(pushed)
    return out


async def _start_forwarding(specs: Sequence[SSHSpec], base_dir: Path) -> SSHForwarding:
    """``start_ssh_forwarding`` in a worker thread, without leaking agents on cancellation.

    Cancelling ``asyncio.to_thread`` does not stop the thread: the private ssh-agents it starts
    would keep running with the keys loaded and nobody holding them. So the thread is shielded,
    and a cancelled caller waits for it and stops what it started before re-raising.
    """
    from wfe_buildkit.ssh_forward import start_ssh_forwarding

    task = asyncio.ensure_future(
        asyncio.to_thread(start_ssh_forwarding, specs, base_dir=base_dir)
    )
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # a failed start has cleaned up after itself
            (await task).close()
        raise


def _tls_settings(config: BuildkitConfig, ctx: StepContext) -> TLSConfig | None:
    """The client's ``TLSConfig``, its files resolved against the workflow's directory."""
    if config.tls is None:
        return None
    from wfe_buildkit.address import TLSConfig

    tls = config.tls
    return TLSConfig(
        ca=str(ctx.resolve_path(tls.ca)) if tls.ca else None,
        cert=str(ctx.resolve_path(tls.cert)) if tls.cert else None,
        key=str(ctx.resolve_path(tls.key)) if tls.key else None,
        server_name=tls.server_name,
    )


def _export_for(output_type: str, config: BuildkitConfig, dest: Path | None) -> Export:
    """The exporter for ``output_type`` (already mapped to ``moby`` on Docker Engine)."""
    from wfe_buildkit.client import Export
    from wfe_buildkit.errors import InvalidRequest

    if output_type == "image":
        return Export.image(config.tags, push=config.push)
    if output_type == "moby":
        return Export.moby(config.tags)
    if output_type not in ("local", "tar", "oci", "docker"):
        raise InvalidRequest(f"unknown output_type {output_type!r}")
    if dest is None:
        raise InvalidRequest(f"output_type {output_type!r} needs output_dest")
    if output_type == "local":
        return Export.local(dest)
    if output_type == "tar":
        return Export.tar(dest)
    if output_type == "oci":
        return Export.oci(dest, config.tags)
    return Export.docker(dest, config.tags)


async def _push_through_engine(
    client: Client, tags: Sequence[str], sources: CredentialSources, log: Any
) -> dict[str, str]:
    """Push ``tags`` through the Engine API with each registry's credential; tag -> digest."""
    from wfe_buildkit.engine import registry_host, split_tag
    from wfe_buildkit.registry_auth import resolve_credential
    from wfe_buildkit.session import RegistryCredentials

    credentials: dict[str, RegistryCredentials] = {}
    for tag in tags:
        host = registry_host(split_tag(tag)[0])
        found = await asyncio.to_thread(resolve_credential, sources, host)
        if not found.anonymous:
            credentials[host] = RegistryCredentials(found.username, found.secret)
        log("stderr", f"pushing {tag}")
    pushed = await client.push(tags, credentials)
    for tag, manifest in pushed.items():
        log("stderr", f"pushed {tag}@{manifest}")
    return pushed


plugin = ExecutorPlugin(
    name="buildkit",
    config_type=BuildkitConfig,
    create=BuildkitStep,
    validators=VALIDATORS,
    description="Build container images from a Dockerfile with BuildKit (native gRPC client)",
)

__all__ = ["BuildkitStep", "plugin"]
