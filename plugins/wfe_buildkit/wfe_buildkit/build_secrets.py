"""Build secrets (``RUN --mount=type=secret,id=...``), served over the session's Secrets service.

The step config declares them as ``secrets: [{id, src: PATH} | {id, env: NAME}]`` — the same
two sources as ``docker buildx build --secret id=...,src=...|env=...``. BuildKit asks the session
for a secret by id when a RUN mounts it (``GetSecret``); an id the step did not declare is
answered NOT_FOUND with a message naming the id and the ids that exist, which the daemon turns
into "secret <id> not found".

Values are loaded when the build starts (:func:`load_secrets`), so an unset variable or an
unreadable file fails the step before anything runs, with an error naming the id and the
variable or path. Values never appear in reprs, logs or errors. :func:`redact` replaces them in
text the build prints (a RUN that echoes its secret), for the step's log and outputs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from wfe_buildkit.config_entries import entry_fields, resolve_under
from wfe_buildkit.errors import InvalidConfig, locate_problems

if TYPE_CHECKING:
    import grpc

    from wfe_buildkit._pb import secrets_pb2

log = logging.getLogger(__name__)

#: BuildKit refuses secrets larger than this (session/secrets/secretsprovider, MaxSecretSize).
MAX_SECRET_SIZE = 500 * 1024
REDACTED = "***"
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class SecretsConfigError(InvalidConfig):
    """The step's ``secrets`` list is malformed or a declared secret cannot be loaded."""


@attrs.frozen
class SecretSpec:
    """One declared secret: its ``id`` and exactly one source, a file or an env variable."""

    id: str
    src: Path | None = None
    env: str | None = None

    @property
    def source(self) -> str:
        """Human description of the source for messages (never the value)."""
        return f"file {self.src}" if self.src is not None else f"environment variable {self.env}"


@attrs.frozen
class LoadedSecret:
    """A secret's value, read at build start."""

    id: str
    value: bytes = attrs.field(repr=False)


def parse_secrets(raw: Any, *, where: str = "secrets") -> tuple[SecretSpec, ...]:
    """Validate the step's ``secrets`` list; raise one error listing every problem.

    Each item: ``{id: NAME, src: PATH}`` or ``{id: NAME, env: VAR}``; ``id`` matches
    ``[A-Za-z0-9_.-]+`` and is unique. Also accepted: the mapping form
    ``{NAME: {src: PATH} | {env: VAR}}``, and attrs objects with ``id``/``src`` (or ``file``)/
    ``env`` attributes in place of the inner mappings.
    """
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        # The mapping form {ID: {src: PATH} | {env: NAME}} (what a dict-typed config holds).
        items: list[Any] = []
        for key, value in raw.items():
            fields = _fields(value)
            items.append({"id": key, **fields} if fields is not None else value)
        raw = items
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise SecretsConfigError(
            f"{where}: expected a list of {{id, src: PATH}} or {{id, env: NAME}} entries"
        )
    problems: list[str] = []
    specs: list[SecretSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        fields = _fields(item)
        if fields is None:
            problems.append(f"{here}: expected a mapping like {{id: NAME, src: PATH}}")
            continue
        unknown = sorted(set(fields) - {"id", "src", "env"})
        if unknown:
            hint = " (did you mean src?)" if {"path", "file", "source"} & set(unknown) else ""
            problems.append(f"{here}: unknown key(s) {', '.join(unknown)}{hint}")
        secret_id = fields.get("id")
        src, env = fields.get("src"), fields.get("env")
        if not isinstance(secret_id, str) or not secret_id:
            problems.append(f"{here}.id: required, a non-empty string")
            secret_id = None
        elif not _ID_RE.match(secret_id):
            problems.append(f"{here}.id: {secret_id!r} may only contain letters, digits, _ . -")
        elif secret_id in seen:
            problems.append(
                f"{here}.id: {secret_id!r} is already declared in {where}[{seen[secret_id]}]"
            )
        else:
            seen[secret_id] = index
        if (src is None) == (env is None):
            problems.append(
                f"{here}: set exactly one of src (a file path) or env (a variable name)"
            )
        elif src is not None and (not isinstance(src, str | os.PathLike) or not str(src)):
            problems.append(f"{here}.src: must be a file path")
        elif env is not None and (not isinstance(env, str) or not env):
            problems.append(f"{here}.env: must be an environment variable name")
        if secret_id is not None and not problems:
            specs.append(
                SecretSpec(id=secret_id, src=Path(src) if src is not None else None, env=env)
            )
    if problems:
        raise SecretsConfigError("; ".join(problems), locate_problems(problems, where))
    return tuple(specs)


def _fields(item: Any) -> dict[str, Any] | None:
    """:func:`entry_fields`, with an attrs entry's ``file`` read as ``src`` (the config class
    names it ``file``; a mapping keeps its keys, so ``file`` there is reported as unknown)."""
    fields = entry_fields(item)
    if isinstance(item, Mapping) or fields is None or "src" in fields or "file" not in fields:
        return fields
    fields["src"] = fields.pop("file")
    return fields


def load_secrets(
    specs: Iterable[SecretSpec],
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> dict[str, LoadedSecret]:
    """Read every declared secret now; errors name the id and the source, never the value.

    Relative ``src`` paths are taken relative to ``base_dir`` (the workflow's directory). Files
    are read as bytes, unchanged (a trailing newline is kept, as with buildx).
    """
    env = os.environ if environ is None else environ
    out: dict[str, LoadedSecret] = {}
    problems: list[str] = []
    for spec in specs:
        if spec.env is not None:
            text = env.get(spec.env)
            if text is None:
                problems.append(
                    f"secret {spec.id!r}: environment variable {spec.env} is not set"
                )
                continue
            value = text.encode()
        else:
            assert spec.src is not None
            path = resolve_under(spec.src, base_dir)
            try:
                if path.is_dir():
                    problems.append(f"secret {spec.id!r}: src {path} is a directory, not a file")
                    continue
                value = path.read_bytes()
            except FileNotFoundError:
                problems.append(f"secret {spec.id!r}: src file {path} does not exist")
                continue
            except OSError as exc:
                problems.append(f"secret {spec.id!r}: cannot read src file {path}: {exc.strerror}")
                continue
        if len(value) > MAX_SECRET_SIZE:
            problems.append(
                f"secret {spec.id!r}: {spec.source} holds {len(value)} bytes; BuildKit accepts at "
                f"most {MAX_SECRET_SIZE} (mount a file through the context instead)"
            )
            continue
        out[spec.id] = LoadedSecret(spec.id, value)
    if problems:
        raise SecretsConfigError("; ".join(problems))
    return out


def redact(text: str, secrets: Iterable[LoadedSecret | bytes | str]) -> str:
    """Replace every occurrence of a secret value (and its lines, for multi-line ones) by ***.

    Meant for build log lines and step outputs. Values shorter than 4 characters are left alone
    (masking every "a" would destroy the log without protecting anything). Multi-line values
    are also masked line by line, since the log may carry them split.
    """
    needles: set[str] = set()
    for item in secrets:
        raw = item.value if isinstance(item, LoadedSecret) else item
        value = raw.decode("utf-8", errors="ignore") if isinstance(raw, bytes) else raw
        for candidate in (value, value.strip(), *value.splitlines()):
            candidate = candidate.strip()
            if len(candidate) >= 4:
                needles.add(candidate)
    for needle in sorted(needles, key=len, reverse=True):
        text = text.replace(needle, REDACTED)
    return text


class SecretsServicer:
    """``moby.buildkit.secrets.v1.Secrets`` for one build's session (grpc.aio).

    Not a subclass of the generated servicer so that importing this module (for config
    validation) does not import grpc; :func:`add_secrets_servicer` registers it.
    """

    def __init__(self, secrets: Mapping[str, LoadedSecret]) -> None:
        self._secrets = dict(secrets)
        #: Ids BuildKit asked for, in order (for diagnostics and tests).
        self.requested: list[str] = []

    async def GetSecret(
        self, request: secrets_pb2.GetSecretRequest, context: grpc.aio.ServicerContext
    ) -> secrets_pb2.GetSecretResponse:
        import grpc

        from wfe_buildkit._pb import secrets_pb2

        self.requested.append(request.ID)
        secret = self._secrets.get(request.ID)
        if secret is None:
            known = ", ".join(sorted(self._secrets)) or "none"
            log.info("build asked for undeclared secret %r", request.ID)
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"secret {request.ID!r} is not declared in the step's secrets "
                f"(declared: {known}); add {{id: {request.ID}, src: PATH}} or "
                f"{{id: {request.ID}, env: NAME}}",
            )
            raise AssertionError("not reached: abort raises")
        log.debug("serving secret %r (%d bytes)", request.ID, len(secret.value))
        return secrets_pb2.GetSecretResponse(data=secret.value)


SECRETS_METHODS = ("/moby.buildkit.secrets.v1.Secrets/GetSecret",)


def add_secrets_servicer(server: grpc.aio.Server, servicer: SecretsServicer) -> None:
    """Register ``servicer`` on a session server (grpc.aio)."""
    from wfe_buildkit._pb import secrets_pb2_grpc

    secrets_pb2_grpc.add_SecretsServicer_to_server(servicer, server)  # type: ignore[no-untyped-call,unused-ignore]


@attrs.define
class SecretsService:
    """The session plug-in (``wfe_buildkit.session.SessionService``) serving build secrets.

    Pass it in ``SolveOpt.services`` (and leave ``SolveOpt.secrets`` empty).
    """

    servicer: SecretsServicer = attrs.field(repr=False)
    methods: Sequence[str] = SECRETS_METHODS

    def register(self, server: grpc.aio.Server) -> None:
        add_secrets_servicer(server, self.servicer)


def secrets_service(secrets: Mapping[str, LoadedSecret]) -> SecretsService:
    """A :class:`SecretsService` serving ``secrets`` (see :func:`load_secrets`)."""
    return SecretsService(SecretsServicer(secrets))
