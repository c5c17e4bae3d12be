"""The public BuildKit client: connect, check, build, push.

Example (Docker Engine's embedded BuildKit)::

    import asyncio
    from wfe_buildkit.client import Client, Export

    async def main() -> None:
        async with Client("docker://") as bk:
            result = await bk.build("./app", exports=[Export.moby(["app:dev"])])
            print(result.digest)

    asyncio.run(main())

The layering follows httpx: :class:`Client` sits over a :class:`~wfe_buildkit.transport.Transport`
(channel, Docker relay), raises only :class:`~wfe_buildkit.errors.BuildkitError` subclasses, and
:meth:`Client.solve` mirrors the Go client's ``Solve(ctx, def, SolveOpt, statusChan)`` with a
callback for status events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import grpc

from wfe_buildkit._pb import control_pb2, control_pb2_grpc
from wfe_buildkit.address import Address, TLSConfig, parse_address
from wfe_buildkit.dockerfile import DockerfileBuild, locator, solve_opt
from wfe_buildkit.errors import (
    BuildCancelled,
    BuildFailed,
    BuildkitError,
    DaemonConnectionError,
    ExportError,
    InvalidRequest,
    PushFailed,
    SessionError,
    UnsupportedByDaemon,
)
from wfe_buildkit.filesync import TransferStats
from wfe_buildkit.progress import (
    LogEvent,
    StatusEvent,
    TransferEvent,
    VertexEvent,
    WarningEvent,
    render_plain,
)
from wfe_buildkit.session import RegistryCredentials, SessionService
from wfe_buildkit.solve import (
    MOBY_MULTI_PLATFORM,
    CacheEntry,
    Export,
    SolveOpt,
    SolveResult,
    requested_platforms,
    run_solve,
)
from wfe_buildkit.transport import Transport

CONNECT_TIMEOUT = 5.0


@attrs.frozen
class Worker:
    """A BuildKit worker as ``ListWorkers`` reports it."""

    id: str
    platforms: tuple[str, ...]
    labels: Mapping[str, str]


@attrs.frozen
class DaemonInfo:
    """``Info`` (BuildKit >= 0.11); None from older daemons such as Docker 20.10's."""

    package: str
    version: str
    revision: str


@attrs.frozen
class BuildResult:
    """A finished build: the digest(s), the exporter response and the upload counters."""

    digest: str | None
    config_digest: str | None
    exporter_response: Mapping[str, str]
    stats: TransferStats
    pushed: Mapping[str, str] = attrs.field(factory=dict)


def _platform(p: Any) -> str:
    text = f"{p.OS}/{p.Architecture}"
    return f"{text}/{p.Variant}" if p.Variant else text


class Client:
    """A connection to one BuildKit daemon. Use ``async with`` (or call :meth:`close`)."""

    def __init__(
        self,
        address: str | None = None,
        *,
        tls: TLSConfig | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.address: Address = parse_address(address)
        self.transport = Transport(self.address, tls)
        self.connect_timeout = connect_timeout

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel and the Docker relay (idempotent)."""
        await self.transport.close()

    @property
    def is_docker(self) -> bool:
        """True when talking to Docker Engine's embedded BuildKit."""
        return self.address.kind == "docker"

    async def _stub(self) -> control_pb2_grpc.ControlStub:
        try:
            channel = await asyncio.wait_for(self.transport.channel(), self.connect_timeout)
        except TimeoutError:
            raise DaemonConnectionError(
                self.address.raw, f"no answer within {self.connect_timeout:g}s"
            ) from None
        return control_pb2_grpc.ControlStub(channel)  # type: ignore[no-untyped-call]

    async def ping(self) -> list[Worker]:
        """``ListWorkers``: proves the daemon answers; errors name the address within 5 s."""
        stub = await self._stub()
        try:
            response = await stub.ListWorkers(
                control_pb2.ListWorkersRequest(), timeout=self.connect_timeout,
                wait_for_ready=False,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DaemonConnectionError(
                    self.address.raw, f"no answer within {self.connect_timeout:g}s",
                    "is the daemon running and reachable?",
                ) from None
            raise self.transport.describe_failure(error) from None
        return [
            Worker(r.ID, tuple(_platform(p) for p in r.platforms), dict(r.Labels))
            for r in response.record
        ]

    async def wait_for_ready(self, timeout: float = 30.0, *, initial_delay: float = 0.05) -> None:
        """Ping with exponential backoff until the daemon answers or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        delay = initial_delay
        while True:
            try:
                await self.ping()
                return
            except DaemonConnectionError as error:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DaemonConnectionError(
                        error.address, f"not ready after {timeout:g}s: {error.reason}", error.hint
                    ) from None
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)

    async def info(self) -> DaemonInfo | None:
        """The daemon's BuildKit version, or None when it has no ``Info`` (before v0.11)."""
        stub = await self._stub()
        try:
            response = await stub.Info(control_pb2.InfoRequest(), timeout=self.connect_timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise self.transport.describe_failure(error) from None
        v = response.buildkitVersion
        return DaemonInfo(v.package, v.version, v.revision)

    async def disk_usage(self) -> list[Mapping[str, Any]]:
        """Build cache records (``DiskUsage``)."""
        stub = await self._stub()
        response = await stub.DiskUsage(control_pb2.DiskUsageRequest())
        return [
            {"id": r.ID, "size": r.Size, "in_use": r.InUse, "description": r.Description}
            for r in response.record
        ]

    async def prune(self, *, all: bool = False) -> int:
        """Prune the build cache; returns the number of records removed."""
        stub = await self._stub()
        count = 0
        async for _record in stub.Prune(control_pb2.PruneRequest(all=all)):
            count += 1
        return count

    async def solve(
        self,
        opt: SolveOpt,
        *,
        progress: Callable[[StatusEvent], None] | None = None,
        locate: Callable[[str], str | None] | None = None,
    ) -> SolveResult:
        """Run one solve (any frontend). Cancellation cancels the build on the daemon.

        A multi-platform ``moby`` export is refused before anything is built when the engine's
        image store cannot hold it (Docker's classic store; only the containerd image store can):
        otherwise the daemon would build every platform and only then fail at the export.
        """
        workers = await self.ping()
        platforms = requested_platforms(opt)
        multi_moby = len(platforms) > 1 and any(e.type == "moby" for e in opt.exports)
        if multi_moby and not await self._engine_stores_indexes():
            raise UnsupportedByDaemon(
                f"{self.address.raw}: "
                + MOBY_MULTI_PLATFORM.format(platforms=", ".join(platforms))
            )
        native: list[str] = []
        for worker in workers:
            for platform in worker.platforms:
                base = "/".join(platform.split("/")[:2])
                if base not in native:
                    native.append(base)
        try:
            return await run_solve(
                self.transport, opt, on_event=progress, locate=locate, native_platforms=native
            )
        except grpc.aio.AioRpcError as error:
            raise self.transport.describe_failure(error) from None

    async def _engine_stores_indexes(self) -> bool:
        """Whether Docker Engine uses the containerd image store (``driver-type
        io.containerd.snapshotter.v1`` in ``/info``), the only one that holds image indexes."""
        from wfe_buildkit.engine import EngineHTTPError

        engine = self.transport.engine
        if engine is None:
            return True
        try:
            status, info = await engine.get_json("/info")
        except (OSError, EngineHTTPError, DaemonConnectionError):
            return True  # unknown: let the daemon decide
        if status != 200 or not isinstance(info, dict):
            return True
        for entry in info.get("DriverStatus") or ():
            if isinstance(entry, list) and len(entry) == 2 and "containerd" in str(entry[1]):
                return True
        return False

    async def build(
        self,
        context: str | Path,
        *,
        dockerfile: str | Path | None = None,
        target: str | None = None,
        build_args: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        platforms: Sequence[str] = (),
        no_cache: bool = False,
        network: str = "default",
        exports: Sequence[Export] = (),
        cache_from: Sequence[str] = (),
        cache_to: Sequence[str] = (),
        registry_auth: Mapping[str, RegistryCredentials] | None = None,
        secrets: Mapping[str, Path | bytes] | None = None,
        ssh_agents: Mapping[str, str] | None = None,
        services: Sequence[SessionService] = (),
        progress: Callable[[StatusEvent], None] | None = None,
    ) -> BuildResult:
        """Build a Dockerfile from a local context directory and export the result.

        ``cache_from``/``cache_to`` take buildx strings (``REF``, ``type=registry,ref=...``,
        ``type=inline``, ``type=local,src=DIR``/``dest=DIR``). ``registry_auth``, ``secrets``
        and ``ssh_agents`` are served by simple built-in session services; ``services`` adds
        session plug-ins (e.g. :mod:`wfe_buildkit.registry_auth`'s, which replace the built-in
        Auth).
        """
        spec = DockerfileBuild(
            context=Path(context).expanduser().absolute(),
            dockerfile=Path(dockerfile).expanduser().absolute() if dockerfile else None,
            target=target,
            build_args=dict(build_args or {}),
            labels=dict(labels or {}),
            platforms=tuple(platforms),
            no_cache=no_cache,
            network=network,
            cache_from=tuple(cache_from),
            cache_to=tuple(cache_to),
        )
        opt = solve_opt(
            spec,
            exports,
            credentials=dict(registry_auth or {}),
            secrets=dict(secrets or {}),
            ssh_agents=dict(ssh_agents or {}),
            services=list(services),
        )
        result = await self.solve(opt, progress=progress, locate=locator(spec.dockerfile_path()))
        response = result.exporter_response
        if cache_to:
            from wfe_buildkit.cache_options import parse_cache_list, update_local_cache_index

            # BuildKit fills a local cache dir's blobs; tagging its index.json is the client's job
            local = [e for e in parse_cache_list(list(cache_to), "cache_to") if e.type == "local"]
            if local:
                await asyncio.to_thread(update_local_cache_index, local, response)
        config_digest = response.get("containerimage.config.digest")
        if config_digest is None and exports and exports[0].type == "moby":
            config_digest = response.get("containerimage.digest")  # the image ID on Docker 20.10
        return BuildResult(response.get("containerimage.digest"), config_digest, response,
                           result.stats)

    async def push(
        self,
        tags: Sequence[str],
        registry_auth: Mapping[str, RegistryCredentials] | None = None,
    ) -> dict[str, str]:
        """Push tags from Docker Engine's image store (after a ``moby`` export).

        Returns tag -> manifest digest as served by the registry.
        """
        engine = self.transport.engine
        if engine is None:
            raise UnsupportedByDaemon(
                "push through the Engine API needs a docker:// address; with buildkitd use "
                "Export.image(tags, push=True)"
            )
        from wfe_buildkit.engine import registry_host, split_tag
        from wfe_buildkit.registry_auth import canonical_host
        from wfe_buildkit.session import credentials_by_registry

        by_registry = credentials_by_registry(registry_auth or {})
        pushed: dict[str, str] = {}
        for tag in tags:
            creds = by_registry.get(canonical_host(registry_host(split_tag(tag)[0])))
            auth = {"username": creds.username, "password": creds.password} if creds else None
            pushed[tag] = await engine.push(tag, auth)
        return pushed


__all__ = [
    "BuildCancelled",
    "BuildFailed",
    "BuildResult",
    "BuildkitError",
    "CacheEntry",
    "Client",
    "DaemonConnectionError",
    "DaemonInfo",
    "Export",
    "ExportError",
    "InvalidRequest",
    "LogEvent",
    "PushFailed",
    "RegistryCredentials",
    "SessionError",
    "SolveOpt",
    "SolveResult",
    "StatusEvent",
    "TLSConfig",
    "TransferEvent",
    "UnsupportedByDaemon",
    "VertexEvent",
    "WarningEvent",
    "Worker",
    "render_plain",
]
