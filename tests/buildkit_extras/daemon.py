"""Helpers for the real-daemon tests: one build through the core client's public API with
this package's session plug-ins (``SolveOpt.services``) and cache options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from wfe_buildkit.cache_options import CacheEntry, cache_frontend_attrs
from wfe_buildkit.client import Client, Export, SolveResult, StatusEvent
from wfe_buildkit.dockerfile import DockerfileBuild, solve_opt
from wfe_buildkit.progress import LogEvent, VertexEvent


@attrs.define
class Recorded:
    """Everything the build printed, for assertions (and secret greps)."""

    events: list[StatusEvent] = attrs.field(factory=list)

    def __call__(self, event: StatusEvent) -> None:
        self.events.append(event)

    @property
    def text(self) -> str:
        return "\n".join(repr(e) for e in self.events)

    def logs(self) -> list[str]:
        return [e.line for e in self.events if isinstance(e, LogEvent)]

    def cached(self) -> list[str]:
        return [e.name for e in self.events if isinstance(e, VertexEvent) and e.state == "cached"]


def docker_address(socket: str) -> str:
    return f"docker+unix://{socket}"


async def build(
    client: Client,
    context: Path,
    exports: Sequence[Export],
    *,
    services: Sequence[Any] = (),
    cache_imports: Sequence[CacheEntry] = (),
    cache_exports: Sequence[CacheEntry] = (),
    no_cache: bool = False,
    recorder: Recorded | None = None,
) -> SolveResult:
    """Build ``context``'s Dockerfile (RUN network ``none``: the harness dockerd has no bridge)."""
    opt = solve_opt(
        DockerfileBuild(context=context, network="none", no_cache=no_cache),
        list(exports),
        services=list(services),
    )
    opt = attrs.evolve(
        opt,
        cache_imports=[entry.to_solve() for entry in cache_imports],
        cache_exports=[entry.to_solve() for entry in cache_exports],
        frontend_attrs={**opt.frontend_attrs, **cache_frontend_attrs(cache_imports)},
    )
    return await client.solve(opt, progress=recorder)
