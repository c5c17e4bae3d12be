"""The ``dockerfile.v0`` frontend: request attributes, local dirs, and Dockerfile locations.

The Dockerfile may live outside the context: the frontend reads it from its own local dir
(``dockerfile``), so the client serves the Dockerfile's directory under that name and the context
under ``context``. Old daemons (Docker 20.10) send no source locations with errors, so a failing
step's line is found here by matching the vertex name (``[3/4] RUN make``) against the
Dockerfile's instructions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from wfe_buildkit.errors import InvalidRequest
from wfe_buildkit.session import shared_key_for
from wfe_buildkit.solve import Export, SolveOpt

NETWORK_MODES = ("default", "none", "host")


@attrs.frozen
class DockerfileBuild:
    """A Dockerfile build, independent of how it was configured."""

    context: Path
    dockerfile: Path | None = None  # None: <context>/Dockerfile
    target: str | None = None
    build_args: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    platforms: Sequence[str] = ()
    no_cache: bool = False
    network: str = "default"
    cache_from: Sequence[str] = ()  # buildx syntax: REF, type=registry,ref=..., type=local,src=
    cache_to: Sequence[str] = ()  # buildx syntax: type=registry,ref=...,mode=max, type=inline...

    def dockerfile_path(self) -> Path:
        return self.dockerfile if self.dockerfile is not None else self.context / "Dockerfile"


def check_paths(build: DockerfileBuild) -> None:
    """Clear errors for a missing context or Dockerfile, before talking to the daemon."""
    if not build.context.exists():
        raise InvalidRequest(f"build context directory does not exist: {build.context}")
    if not build.context.is_dir():
        raise InvalidRequest(f"build context is not a directory: {build.context}")
    dockerfile = build.dockerfile_path()
    if not dockerfile.is_file():
        raise InvalidRequest(
            f"Dockerfile not found: {dockerfile}"
            + ("" if build.dockerfile else " (set 'dockerfile' to its path)")
        )


def solve_opt(
    build: DockerfileBuild, exports: Sequence[Export], **extra: Any
) -> SolveOpt:
    """The :class:`SolveOpt` for ``build`` with ``exports`` (``extra`` goes to SolveOpt)."""
    check_paths(build)
    if build.network not in NETWORK_MODES:
        raise InvalidRequest(
            f"unknown network mode {build.network!r}; use one of {', '.join(NETWORK_MODES)}"
        )
    dockerfile = build.dockerfile_path()
    frontend: dict[str, str] = {"filename": dockerfile.name}
    if build.target:
        frontend["target"] = build.target
    for key, value in sorted(build.build_args.items()):
        frontend[f"build-arg:{key}"] = value
    for key, value in sorted(build.labels.items()):
        frontend[f"label:{key}"] = value
    if build.platforms:
        frontend["platform"] = ",".join(build.platforms)
    if build.no_cache:
        frontend["no-cache"] = ""
    entitlements: list[str] = []
    if build.network != "default":
        frontend["force-network-mode"] = build.network
        if build.network == "host":
            entitlements.append("network.host")
    from wfe_buildkit.cache_options import (
        cache_frontend_attrs,
        local_cache_service,
        local_cache_stores,
        parse_cache_list,
        prepare_local_imports,
    )

    imports = prepare_local_imports(parse_cache_list(list(build.cache_from), "cache_from"))
    exports_ = parse_cache_list(list(build.cache_to), "cache_to")
    frontend.update(cache_frontend_attrs(imports))
    stores = local_cache_stores(imports, exports_)
    if stores:
        extra["services"] = [*extra.get("services", ()), local_cache_service(stores)]
    return SolveOpt(
        frontend="dockerfile.v0",
        frontend_attrs=frontend,
        local_dirs={"context": build.context, "dockerfile": dockerfile.parent},
        exports=list(exports),
        cache_imports=[entry.to_solve() for entry in imports],
        cache_exports=[entry.to_solve() for entry in exports_],
        entitlements=entitlements,
        shared_key=shared_key_for(build.context),
        **extra,
    )


_STEP = re.compile(r"^\[(?:[^\]]*\s)?\d+/\d+\]\s+(.*)$", re.S)


def instructions(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction text joined over ``\\`` continuations) per instruction."""
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if not current:
            start = number
        if line.endswith("\\"):
            current.append(line[:-1].strip())
            continue
        current.append(line)
        out.append((start, " ".join(p for p in current if p)))
        current = []
    if current:
        out.append((start, " ".join(current)))
    return out


def _normal(text: str) -> str:
    return " ".join(text.split())


def locator(dockerfile: Path) -> Callable[[str], str | None]:
    """A ``locate(vertex_name) -> 'Dockerfile:LINE' | None`` for errors of this build."""

    def locate(name: str) -> str | None:
        label = dockerfile.name
        if name.startswith("#line "):
            return f"{label}:{name[6:]}"
        match = _STEP.match(name.strip())
        if not match:
            return None
        wanted = _normal(match.group(1))
        try:
            text = dockerfile.read_text(errors="replace")
        except OSError:
            return None
        for number, instruction in instructions(text):
            keyword, _, rest = instruction.partition(" ")
            candidate = _normal(f"{keyword.upper()} {rest}")
            if candidate == wanted or candidate.startswith(wanted) or wanted.startswith(candidate):
                return f"{label}:{number}"
        return None

    return locate


__all__ = [
    "NETWORK_MODES",
    "DockerfileBuild",
    "check_paths",
    "instructions",
    "locator",
    "solve_opt",
]
