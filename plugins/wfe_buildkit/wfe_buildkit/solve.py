"""One solve: session up, ``Solve`` and ``Status`` concurrently, exports back, session down.

This mirrors the Go client's ``client.Solve(ctx, def, SolveOpt, statusChan)``: the request is a
:class:`SolveOpt` (frontend, attributes, local directories, exporters, cache, entitlements,
credentials), progress arrives through a callback while the build runs, and the result is the
exporter response. Cancelling the coroutine (a timeout, Ctrl-C) cancels the ``Solve`` RPC, which
cancels the build on the daemon, and tears the session down before ``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import grpc

from wfe_buildkit._pb import control_pb2, control_pb2_grpc
from wfe_buildkit.errors import (
    BuildFailed,
    BuildkitError,
    InvalidRequest,
    SessionError,
    UnsupportedByDaemon,
)
from wfe_buildkit.filesync import TransferStats
from wfe_buildkit.progress import ProgressTracker, StatusEvent
from wfe_buildkit.session import (
    OutputTarget,
    RegistryCredentials,
    SessionServer,
    SessionService,
    random_id,
)
from wfe_buildkit.transport import Transport

STATUS_DRAIN_SECONDS = 5.0
FILE_EXPORTERS = ("tar", "oci", "docker")


@attrs.frozen
class Export:
    """One exporter: its type, its attributes, and for local/tar/oci/docker the client path."""

    type: str
    attrs: Mapping[str, str] = attrs.field(factory=dict)
    dest: Path | None = None

    @classmethod
    def image(cls, tags: Sequence[str], *, push: bool = False) -> Export:
        """Into buildkitd's image store (standalone buildkitd), optionally pushed."""
        attributes = {"name": ",".join(tags)} if tags else {}
        if push:
            attributes["push"] = "true"
        return cls("image", attributes)

    @classmethod
    def moby(cls, tags: Sequence[str]) -> Export:
        """Into Docker Engine's image store (Docker's embedded BuildKit)."""
        return cls("moby", {"name": ",".join(tags)} if tags else {})

    @classmethod
    def local(cls, dest: str | Path) -> Export:
        """The final filesystem, written into the client directory ``dest``."""
        return cls("local", {}, Path(dest))

    @classmethod
    def tar(cls, dest: str | Path) -> Export:
        """The final filesystem as a tar file at ``dest`` on the client."""
        return cls("tar", {}, Path(dest))

    @classmethod
    def oci(cls, dest: str | Path, tags: Sequence[str] = ()) -> Export:
        """An OCI image layout tarball at ``dest`` (standalone buildkitd)."""
        return cls("oci", {"name": ",".join(tags)} if tags else {}, Path(dest))

    @classmethod
    def docker(cls, dest: str | Path, tags: Sequence[str] = ()) -> Export:
        """A ``docker load`` tarball at ``dest`` (standalone buildkitd)."""
        return cls("docker", {"name": ",".join(tags)} if tags else {}, Path(dest))

    def target(self) -> OutputTarget | None:
        if self.dest is None:
            return None
        return OutputTarget(self.dest, is_directory=self.type == "local")


@attrs.frozen
class CacheEntry:
    """A cache import or export (``registry``, ``inline``, ``local``...) with its attributes."""

    type: str
    attrs: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class SolveOpt:
    """Everything one solve needs. ``local_dirs`` maps names (``context``) to directories."""

    frontend: str = "dockerfile.v0"
    frontend_attrs: Mapping[str, str] = attrs.field(factory=dict)
    local_dirs: Mapping[str, Path] = attrs.field(factory=dict)
    exports: Sequence[Export] = ()
    cache_imports: Sequence[CacheEntry] = ()
    cache_exports: Sequence[CacheEntry] = ()
    entitlements: Sequence[str] = ()
    credentials: Mapping[str, RegistryCredentials] = attrs.field(factory=dict, repr=False)
    secrets: Mapping[str, Path | bytes] = attrs.field(factory=dict, repr=False)
    ssh_agents: Mapping[str, str] = attrs.field(factory=dict)
    shared_key: str = ""
    services: Sequence[SessionService] = ()


@attrs.frozen
class SolveResult:
    """The exporter response (``containerimage.digest``...) and the session's traffic."""

    exporter_response: Mapping[str, str]
    ref: str
    stats: TransferStats

    @property
    def digest(self) -> str | None:
        return self.exporter_response.get("containerimage.digest")

    @property
    def config_digest(self) -> str | None:
        return self.exporter_response.get("containerimage.config.digest")


def build_request(opt: SolveOpt, ref: str, session_id: str) -> Any:
    """The ``SolveRequest``: exporters in both the old fields (3/4) and the repeated one (13)."""
    for export in opt.exports:
        if export.type in ("local", *FILE_EXPORTERS) and export.dest is None:
            raise InvalidRequest(f"the {export.type} exporter needs a destination path")
    request = control_pb2.SolveRequest(
        Ref=ref,
        Session=session_id,
        Frontend=opt.frontend,
        FrontendAttrs=dict(opt.frontend_attrs),
        Entitlements=list(opt.entitlements),
    )
    if opt.exports:
        first = opt.exports[0]
        request.ExporterDeprecated = first.type
        request.ExporterAttrsDeprecated.update(first.attrs)
        for export in opt.exports:
            request.Exporters.add(Type=export.type, Attrs=dict(export.attrs))
    for entry in opt.cache_imports:
        request.Cache.Imports.add(Type=entry.type, Attrs=dict(entry.attrs))
    for entry in opt.cache_exports:
        request.Cache.Exports.add(Type=entry.type, Attrs=dict(entry.attrs))
    if "cache-imports" not in request.FrontendAttrs:  # dockerfile.solve_opt sets it already
        from wfe_buildkit.cache_options import CacheEntry as ParsedCacheEntry
        from wfe_buildkit.cache_options import cache_frontend_attrs

        request.FrontendAttrs.update(
            cache_frontend_attrs(ParsedCacheEntry(e.type, e.attrs) for e in opt.cache_imports)
        )
    return request


_PREFIX = re.compile(r"^(rpc error: code = \w+ desc = )+")
_PARSE = re.compile(r"(?:dockerfile )?parse error (?:on )?line (\d+): (.*)", re.S)
_EXIT = re.compile(r"exit code: (\d+)")
_NOT_FOUND = re.compile(r'exporter "?(\w+)"? could not be found')
_MULTI_REF = "exporting multiple references to image store is currently unsupported"
_EXEC_FORMAT = "exec format error"

MOBY_MULTI_PLATFORM = (
    "Docker Engine's image store cannot hold a multi-platform image ({platforms}): its classic "
    "image store keeps one platform per image name (the daemon refuses with \"exporting multiple "
    "references to image store is currently unsupported\"). Use output_type local or tar (one "
    "directory per platform, linux_amd64/, linux_arm64/...), build one platform per step, or use "
    "a standalone buildkitd with output_type image (push: true pushes an image index) or oci"
)


def requested_platforms(opt: SolveOpt) -> list[str]:
    """The target platforms of a Dockerfile solve (frontend attribute ``platform``)."""
    return [p.strip() for p in opt.frontend_attrs.get("platform", "").split(",") if p.strip()]


def emulation_hint(platform: str | None, native: Sequence[str]) -> str:
    """What to do about ``exec format error``: the daemon ran a binary of a foreign platform."""
    target = platform or "the target platform"
    arch = platform.split("/")[1] if platform and "/" in platform else "that architecture"
    text = (
        f"the daemon cannot run {target} binaries: no emulation for {arch} is installed on the "
        "daemon's host (register binfmt_misc handlers with QEMU, e.g. the qemu-user-static "
        f"package or `docker run --privileged --rm tonistiigi/binfmt --install {arch}`), "
        f"or remove {target} from platforms"
    )
    if native:
        text += f"; the daemon's workers build natively for {', '.join(native)}"
    return text


def clean_message(details: str) -> str:
    """The daemon's message without grpc-go's nested ``rpc error: code = ... desc =`` prefixes."""
    return _PREFIX.sub("", details.strip())


def _source_location(error: grpc.aio.AioRpcError) -> str | None:
    """A ``file:line`` from ``errdefs.Source`` details (BuildKit >= 0.9; JSON, not protobuf)."""
    try:
        from google.rpc import status_pb2
    except ImportError:  # pragma: no cover - dependency of the package
        return None
    metadata: Any = error.trailing_metadata() or ()
    for key, value in metadata:
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if not detail.type_url.endswith("errdefs.Source+json"):
                continue
            try:
                source = json.loads(detail.value)
                info = source.get("info") or {}
                ranges = source.get("ranges") or []
                line = ranges[0]["start"]["line"] if ranges else None
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                continue
            name = info.get("filename") or "Dockerfile"
            return f"{name}:{line}" if line else name
    return None


def failure_from(
    error: grpc.aio.AioRpcError,
    tracker: ProgressTracker,
    locate: Callable[[str], str | None] | None,
    session: SessionServer,
    *,
    platforms: Sequence[str] = (),
    native_platforms: Sequence[str] = (),
) -> BuildkitError:
    """Build the most useful error for a failed ``Solve``.

    ``platforms`` are the requested target platforms: the failing step's platform comes from the
    vertex names (``[linux/arm64 2/2] RUN ...``, or an input's), or is the only requested one.
    ``native_platforms`` (the workers') go into the hint for ``exec format error``.
    """
    message = clean_message(error.details() or "")
    parse = _PARSE.search(message)
    if parse:
        where = _source_location(error)
        if where is None and locate is not None:
            where = locate(f"#line {parse.group(1)}")
        return BuildFailed(
            parse.group(2).strip(), location=where or f"line {parse.group(1)}", syntax_error=True
        )
    missing = _NOT_FOUND.search(message)
    if missing:
        return UnsupportedByDaemon(
            f"the daemon has no {missing.group(1)!r} exporter ({message}); Docker Engine's "
            "embedded BuildKit offers moby, local and tar"
        )
    if _MULTI_REF in message:
        return UnsupportedByDaemon(
            MOBY_MULTI_PLATFORM.format(platforms=", ".join(platforms) or "several platforms")
        )
    if session.errors and ("export" in message or "session" in message):
        return SessionError(f"{session.errors[0]} (daemon: {message})")
    vertex = tracker.failed_vertex()
    name = vertex.name if vertex else None
    location = _source_location(error)
    if location is None and name and locate is not None:
        location = locate(name)
    exit_match = _EXIT.search(message)
    platform = tracker.platform_of(vertex.digest) if vertex else None
    if platform is None and len(platforms) == 1:
        platform = platforms[0]
    logs = list(vertex.tail) if vertex else []
    hint = None
    if _EXEC_FORMAT in message or any(_EXEC_FORMAT in line for line in logs):
        hint = emulation_hint(platform, native_platforms)
    elif "lint violation" in message and tracker.warnings:
        hint = "the Dockerfile's check=error=true makes these warnings errors: " + "; ".join(
            tracker.warnings
        )
    elif "network bridge not found" in message:
        hint = (
            "the daemon has no default bridge network (e.g. dockerd --bridge=none); "
            "build with network: none or network: host"
        )
    elif "is not allowed" in message and ("entitlement" in message or "network.host" in message):
        hint = "the daemon must allow the entitlement (buildkitd --allow-insecure-entitlement)"
    return BuildFailed(
        message,
        vertex=name,
        location=location,
        logs=logs,
        exit_code=int(exit_match.group(1)) if exit_match else None,
        hint=hint,
        platform=platform if platforms else None,
    )


async def _consume_status(call: Any, tracker: ProgressTracker) -> None:
    try:
        async for response in call:
            tracker.feed(response)
    except grpc.aio.AioRpcError:
        pass  # the Solve result is authoritative; a broken status stream only loses progress
    finally:
        tracker.flush()


async def run_solve(
    transport: Transport,
    opt: SolveOpt,
    *,
    on_event: Callable[[StatusEvent], None] | None = None,
    locate: Callable[[str], str | None] | None = None,
    native_platforms: Sequence[str] = (),
) -> SolveResult:
    """Run one solve against ``transport``'s daemon (see module docstring)."""
    for name, directory in opt.local_dirs.items():
        if not Path(directory).is_dir():
            raise InvalidRequest(f"local directory {name!r} does not exist: {directory}")
    channel = await transport.channel()
    stub = control_pb2_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]
    ref = random_id()
    tracker = ProgressTracker(on_event)
    session = SessionServer(
        local_dirs=opt.local_dirs,
        outputs=[e.target() for e in opt.exports],
        credentials=opt.credentials,
        secrets=opt.secrets,
        ssh_agents=opt.ssh_agents,
        shared_key=opt.shared_key,
        services=opt.services,
    )
    request = build_request(opt, ref, session.session_id)
    async with session:
        if transport.engine is not None and not transport.session_over_control:
            await session.attach_docker(transport.engine)
        else:
            await session.attach_control(stub)
        solve_call = stub.Solve(request)
        status_call = stub.Status(control_pb2.StatusRequest(Ref=ref))
        status_task = asyncio.ensure_future(_consume_status(status_call, tracker))
        try:
            try:
                response = await solve_call
            except grpc.aio.AioRpcError as error:
                if error.code() in (grpc.StatusCode.UNAVAILABLE,) and not tracker.vertices:
                    raise transport.describe_failure(error) from None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(status_task), 2.0)
                raise failure_from(
                    error, tracker, locate, session,
                    platforms=requested_platforms(opt), native_platforms=native_platforms,
                ) from None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(status_task), STATUS_DRAIN_SECONDS)
        finally:
            solve_call.cancel()
            status_call.cancel()
            status_task.cancel()
            with contextlib.suppress(BaseException):
                await status_task
    return SolveResult(dict(response.ExporterResponse), ref, session.stats)


__all__ = [
    "MOBY_MULTI_PLATFORM",
    "CacheEntry",
    "Export",
    "SolveOpt",
    "SolveResult",
    "build_request",
    "clean_message",
    "run_solve",
]
