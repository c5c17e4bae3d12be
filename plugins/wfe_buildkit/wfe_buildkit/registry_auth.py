"""Registry credentials for BuildKit, served over the session's ``moby.filesync.v1.Auth`` service.

BuildKit never reads credentials itself: when a registry answers 401 (base image pull, ``push``,
registry cache import/export) the daemon calls back into the client's session and asks for the
host's username and secret. This module answers that question, in this order:

1. the step's ``registry_auth`` mapping (``host -> {username, password_env | password_file}``;
   the password is never written inline in the workflow),
2. the Docker CLI config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``):
   ``credHelpers[host]``, then ``credsStore``, then the base64 ``auths[host].auth`` /
   ``identitytoken`` entry — the same precedence the Docker CLI uses,
3. nothing: empty username and secret, which BuildKit treats as "anonymous".

Docker Hub is special: the daemon asks for ``registry-1.docker.io`` while configs store it
under ``https://index.docker.io/v1/`` (or ``docker.io``, ``index.docker.io``); all of these are
one host here (:func:`canonical_host`).

Only ``Credentials`` is implemented. ``GetTokenAuthority`` answers UNIMPLEMENTED, which makes
BuildKit (util/resolver/authorizer.go, identical since v0.8) fall back to ``Credentials`` and
fetch bearer tokens itself; ``FetchToken`` and ``VerifyTokenAuthority`` are then never called,
and also answer UNIMPLEMENTED.

Secrets never leave through reprs, logs or error messages: :class:`RegistryCredential` hides
its secret from ``repr``, and errors name the host, the environment variable or the file, never
the value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from wfe_buildkit.config_entries import entry_fields, resolve_under
from wfe_buildkit.errors import ConfigProblem, InvalidConfig

if TYPE_CHECKING:
    import grpc

    from wfe_buildkit._pb import auth_pb2

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = frozenset(
    {
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "registry.hub.docker.com",
    }
)
#: The key the Docker CLI uses for Docker Hub in ``auths`` and with credential helpers.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT_S = 30.0


def _located(messages: list[str], where: str, keys: list[str]) -> tuple[ConfigProblem, ...]:
    """Pair each message with its config path, read from its ``where.KEY`` prefix (hosts are
    mapping keys here, not list indexes as for :func:`~wfe_buildkit.errors.locate_problems`)."""
    out: list[ConfigProblem] = []
    for message in messages:
        matches = [k for k in keys if message.startswith(f"{where}.{k}")]
        key = max(matches, key=len) if matches else None
        out.append(((where, key) if key is not None else (where,), message))
    return tuple(out)


class RegistryAuthError(InvalidConfig):
    """Credentials were configured but cannot be loaded (unset variable, unreadable file...)."""


@attrs.frozen
class RegistryCredential:
    """A username and secret for one registry host. ``secret`` is a password or identity token.

    An identity token (OAuth refresh token) is sent with an empty ``username``, the way
    BuildKit's own client does.
    """

    username: str
    secret: str = attrs.field(repr=False)

    @property
    def anonymous(self) -> bool:
        return not self.username and not self.secret


ANONYMOUS = RegistryCredential("", "")


@attrs.frozen
class RegistryAuthSpec:
    """One entry of the step's ``registry_auth``: where the password for ``host`` comes from."""

    host: str
    username: str
    password_env: str | None = None
    password_file: Path | None = None


# ---------------------------------------------------------------------------------------------
# Host names


def canonical_host(server: str) -> str:
    """Reduce a registry address as written anywhere to the host[:port] used for lookups.

    Accepts ``https://index.docker.io/v1/``, ``http://host:5000``, ``host:5000/v2/`` and plain
    hosts; lower-cases the name and maps every Docker Hub alias to ``docker.io``.
    """
    text = server.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0].lower()
    if text in _DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    return text


def _helper_server_urls(host: str) -> list[str]:
    """The server URLs to hand a credential helper for ``host`` (first match wins)."""
    if host == DOCKER_HUB:
        return [DOCKER_HUB_CONFIG_KEY, "docker.io", "index.docker.io", "registry-1.docker.io"]
    return [host, f"https://{host}"]


# ---------------------------------------------------------------------------------------------
# The step's ``registry_auth``


def parse_registry_auth(
    raw: Mapping[str, Any] | None, *, where: str = "registry_auth"
) -> tuple[RegistryAuthSpec, ...]:
    """Turn the step's ``registry_auth`` mapping into specs, or raise one error listing problems.

    Each value must be a mapping with ``username`` and exactly one of ``password_env`` (the name
    of an environment variable) or ``password_file`` (a path). An inline ``password`` is refused
    so that it can never end up in a workflow file, a log or an error.
    Also accepts objects with those attributes (an attrs config class of the step).
    """
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise RegistryAuthError(
            f"{where}: expected a mapping of registry host to "
            "{username, password_env | password_file}, got " + type(raw).__name__
        )
    problems: list[str] = []
    specs: list[RegistryAuthSpec] = []
    seen: dict[str, str] = {}
    for host_key, value in raw.items():
        here = f"{where}.{host_key}"
        if not isinstance(host_key, str) or not host_key.strip():
            problems.append(f"{where}: registry host names must be non-empty strings")
            continue
        entry = entry_fields(value)
        if entry is None:
            problems.append(
                f"{here}: expected a mapping with username and password_env or password_file"
            )
            continue
        unknown = sorted(set(entry) - {"username", "password_env", "password_file"})
        if "password" in unknown:
            problems.append(
                f"{here}.password: inline passwords are not accepted; put the password in an "
                "environment variable (password_env: NAME) or a file (password_file: PATH)"
            )
            unknown.remove("password")
        if unknown:
            problems.append(
                f"{here}: unknown key(s) {', '.join(unknown)} "
                "(allowed: username, password_env, password_file)"
            )
        username = entry.get("username")
        password_env = entry.get("password_env")
        password_file = entry.get("password_file")
        if not isinstance(username, str) or not username:
            problems.append(f"{here}.username: required, a non-empty string")
        if (password_env is None) == (password_file is None):
            problems.append(f"{here}: set exactly one of password_env or password_file")
        if password_env is not None and (not isinstance(password_env, str) or not password_env):
            problems.append(f"{here}.password_env: must be the name of an environment variable")
        if password_file is not None and not isinstance(password_file, str | os.PathLike):
            problems.append(f"{here}.password_file: must be a file path")
        host = canonical_host(host_key)
        if host in seen:
            problems.append(f"{here}: same registry as {where}.{seen[host]} ({host})")
        seen[host] = host_key
        if problems:
            continue
        specs.append(
            RegistryAuthSpec(
                host=host,
                username=str(username),
                password_env=password_env,
                password_file=Path(password_file) if password_file is not None else None,
            )
        )
    if problems:
        located = _located(problems, where, [str(k) for k in raw])
        raise RegistryAuthError("; ".join(problems), located)
    return tuple(specs)


def load_step_credentials(
    specs: tuple[RegistryAuthSpec, ...],
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> dict[str, RegistryCredential]:
    """Read every spec's password now, so a missing variable or file fails before the build.

    ``password_file`` paths that are relative are taken relative to ``base_dir`` (the workflow's
    directory); one trailing newline is stripped from a file's content. Errors name the host
    and the variable or file, never the value.
    """
    env = os.environ if environ is None else environ
    out: dict[str, RegistryCredential] = {}
    problems: list[str] = []
    for spec in specs:
        if spec.password_env is not None:
            value = env.get(spec.password_env)
            if value is None:
                problems.append(
                    f"registry_auth.{spec.host}: environment variable {spec.password_env} "
                    "is not set (it should hold the registry password)"
                )
                continue
        else:
            assert spec.password_file is not None
            path = resolve_under(spec.password_file, base_dir)
            try:
                value = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                problems.append(f"registry_auth.{spec.host}: password_file {path} does not exist")
                continue
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(
                    f"registry_auth.{spec.host}: cannot read password_file {path}: "
                    f"{type(exc).__name__}"
                    + (f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else "")
                )
                continue
            value = value.removesuffix("\n").removesuffix("\r")
        if not value:
            problems.append(f"registry_auth.{spec.host}: the password is empty")
            continue
        out[spec.host] = RegistryCredential(spec.username, value)
    if problems:
        raise RegistryAuthError("; ".join(problems))
    return out


# ---------------------------------------------------------------------------------------------
# Docker CLI config


def docker_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json`` if set, else ``~/.docker/config.json``."""
    env = os.environ if environ is None else environ
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


@attrs.frozen
class DockerConfig:
    """The credential-related parts of a Docker CLI config file, keys already canonical."""

    auths: Mapping[str, RegistryCredential] = attrs.field(factory=dict, repr=False)
    cred_helpers: Mapping[str, str] = attrs.field(factory=dict)
    creds_store: str | None = None
    path: Path | None = None


def load_docker_config(path: Path) -> DockerConfig:
    """Parse ``config.json``; a missing file is an empty config, a broken one an error.

    Entries whose ``auth`` is not valid base64 ``user:password`` are reported with the file and
    the host (never the bad value).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return DockerConfig(path=path)
    except OSError as exc:
        raise RegistryAuthError(f"cannot read Docker config {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryAuthError(
            f"Docker config {path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise RegistryAuthError(f"Docker config {path}: expected a JSON object at the top level")
    auths: dict[str, RegistryCredential] = {}
    raw_auths = data.get("auths") or {}
    if not isinstance(raw_auths, dict):
        raise RegistryAuthError(f"Docker config {path}: 'auths' must be an object")
    for server, entry in raw_auths.items():
        if not isinstance(entry, dict):
            continue
        credential = _auth_entry(entry, path=path, server=server)
        if credential is not None:
            auths.setdefault(canonical_host(server), credential)
    helpers_raw = data.get("credHelpers") or {}
    helpers = (
        {canonical_host(k): str(v) for k, v in helpers_raw.items() if v}
        if isinstance(helpers_raw, dict)
        else {}
    )
    store = data.get("credsStore")
    return DockerConfig(
        auths=auths,
        cred_helpers=helpers,
        creds_store=str(store) if store else None,
        path=path,
    )


def _auth_entry(entry: Mapping[str, Any], *, path: Path, server: str) -> RegistryCredential | None:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return RegistryCredential("", token)
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryAuthError(
                f"Docker config {path}: auths[{server!r}].auth is not valid base64 of "
                "'username:password'"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise RegistryAuthError(
                f"Docker config {path}: auths[{server!r}].auth does not decode to "
                "'username:password'"
            )
        return RegistryCredential(username, password.strip("\x00"))
    plain_user, plain_password = entry.get("username"), entry.get("password")
    if isinstance(plain_user, str) and isinstance(plain_password, str) and plain_user:
        return RegistryCredential(plain_user, plain_password)
    return None


HelperRunner = Callable[[str, str], "subprocess.CompletedProcess[bytes]"]


def _run_helper(program: str, server_url: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [program, "get"],
        input=server_url.encode(),
        capture_output=True,
        timeout=HELPER_TIMEOUT_S,
        check=False,
    )


def credential_from_helper(
    helper: str, host: str, *, run: HelperRunner = _run_helper
) -> RegistryCredential | None:
    """Ask ``docker-credential-<helper> get`` for ``host``; None when it has nothing.

    The helper protocol: the server URL on stdin, JSON ``{ServerURL, Username, Secret}`` on
    stdout; "credentials not found" is a normal miss. A username of ``<token>`` marks an
    identity token. Errors name the helper program and host; the helper's output is not quoted
    (it may contain the secret) except for its message on a non-zero exit.
    """
    program = f"docker-credential-{helper}"
    for server_url in _helper_server_urls(host):
        try:
            proc = run(program, server_url)
        except FileNotFoundError:
            raise RegistryAuthError(
                f"credential helper {program} (configured for {host}) is not installed or not "
                "on PATH"
            ) from None
        except subprocess.TimeoutExpired:
            raise RegistryAuthError(
                f"credential helper {program} did not answer for {host} within "
                f"{HELPER_TIMEOUT_S:.0f}s"
            ) from None
        if proc.returncode != 0:
            message = proc.stdout.decode(errors="replace").strip()
            message = message or proc.stderr.decode(errors="replace").strip()
            if "credentials not found" in message.lower():
                continue
            raise RegistryAuthError(
                f"credential helper {program} failed for {host} (exit {proc.returncode}): "
                f"{message[:200]}"
            )
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise RegistryAuthError(
                f"credential helper {program} returned malformed output for {host}"
            ) from None
        if not isinstance(data, dict):
            raise RegistryAuthError(
                f"credential helper {program} returned malformed output for {host}"
            )
        username = str(data.get("Username") or "")
        secret = str(data.get("Secret") or "")
        if username == "<token>":
            username = ""
        if username or secret:
            return RegistryCredential(username, secret)
    return None


# ---------------------------------------------------------------------------------------------
# Resolution


@attrs.frozen
class CredentialSources:
    """Everything credentials are resolved from, in precedence order."""

    step: Mapping[str, RegistryCredential] = attrs.field(factory=dict, repr=False)
    docker: DockerConfig = attrs.field(factory=DockerConfig)


def resolve_credential(
    sources: CredentialSources, host: str, *, run: HelperRunner = _run_helper
) -> RegistryCredential:
    """The credential for ``host`` (as BuildKit sends it) or :data:`ANONYMOUS`.

    Order: the step's ``registry_auth``, the config's ``credHelpers[host]``, its
    ``credsStore``, then its ``auths`` entry.
    """
    return resolve_with_origin(sources, host, run=run)[0]


def resolve_with_origin(
    sources: CredentialSources, host: str, *, run: HelperRunner = _run_helper
) -> tuple[RegistryCredential, str]:
    """Like :func:`resolve_credential`, plus where the answer came from (for error hints)."""
    key = canonical_host(host)
    if key in sources.step:
        return sources.step[key], "the step's registry_auth"
    docker = sources.docker
    where = str(docker.path) if docker.path else "the Docker config"
    helper = docker.cred_helpers.get(key)
    if helper:
        found = credential_from_helper(helper, key, run=run)
        if found is None:
            return ANONYMOUS, f"no credentials (credHelpers docker-credential-{helper} had none)"
        return found, f"docker-credential-{helper} (credHelpers in {where})"
    if docker.creds_store:
        program = f"docker-credential-{docker.creds_store}"
        if run is _run_helper and shutil.which(program) is None:
            # credsStore applies to every registry; a config copied from a desktop machine
            # ("desktop", "osxkeychain") must not break anonymous pulls on a CI runner.
            log.warning("credsStore %s is not installed (%s not on PATH); ignoring it",
                        docker.creds_store, program)
        else:
            found = credential_from_helper(docker.creds_store, key, run=run)
            if found is not None:
                return found, f"{program} (credsStore in {where})"
    if key in docker.auths:
        return docker.auths[key], f"auths in {where}"
    return ANONYMOUS, "no credentials configured"


def credential_sources(
    registry_auth: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    docker_config: Path | None = None,
    use_docker_config: bool = True,
) -> CredentialSources:
    """Build the sources for one build: parse + load the step's entries, read the Docker config.

    Raises :class:`RegistryAuthError` before the build starts when anything configured cannot
    be loaded.
    """
    specs = parse_registry_auth(registry_auth)
    step = load_step_credentials(specs, environ=environ, base_dir=base_dir)
    docker = DockerConfig()
    if use_docker_config:
        docker = load_docker_config(docker_config or docker_config_path(environ))
    return CredentialSources(step=step, docker=docker)


# ---------------------------------------------------------------------------------------------
# The session service


class AuthServicer:
    """``moby.filesync.v1.Auth`` for one build's session (grpc.aio).

    Results are cached per host for the session: BuildKit asks repeatedly (once per
    repository scope) and credential helpers can be slow or prompt the OS keychain. Helper
    subprocesses run in a worker thread so health checks keep being answered (v0.8 daemons drop
    the session after one slow health check). A helper failure answers UNAVAILABLE with the
    helper's name, which BuildKit puts into the build error.

    Not a subclass of the generated servicer so that importing this module (for config
    validation) does not import grpc; :func:`add_auth_servicer` registers it.
    """

    def __init__(
        self, sources: CredentialSources, *, run_helper: HelperRunner = _run_helper
    ) -> None:
        self._sources = sources
        self._run_helper = run_helper
        self._cache: dict[str, RegistryCredential] = {}
        #: host -> where its credential came from ("the step's registry_auth", ...).
        self.origins: dict[str, str] = {}
        self._lock = asyncio.Lock()
        #: Hosts BuildKit asked about, in order (for diagnostics: "unauthorized" hints).
        self.hosts_asked: list[str] = []

    async def Credentials(
        self, request: auth_pb2.CredentialsRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CredentialsResponse:
        import grpc

        from wfe_buildkit._pb import auth_pb2

        host = canonical_host(request.Host)
        self.hosts_asked.append(request.Host)
        async with self._lock:
            if host not in self._cache:
                try:
                    resolved, origin = await asyncio.to_thread(
                        resolve_with_origin, self._sources, host, run=self._run_helper
                    )
                except RegistryAuthError as exc:
                    log.warning("registry credentials for %s: %s", host, exc)
                    await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
                    raise  # not reached: abort raises
                self._cache[host] = resolved
                self.origins[host] = origin
            credential = self._cache[host]
        log.debug(
            "registry credentials for %s: %s",
            request.Host,
            "anonymous" if credential.anonymous else f"user {credential.username or '<token>'}",
        )
        return auth_pb2.CredentialsResponse(Username=credential.username, Secret=credential.secret)

    def answered(self, host: str) -> RegistryCredential:
        """The credential this servicer gave for ``host`` (anonymous if never asked)."""
        return self._cache.get(canonical_host(host), ANONYMOUS)

    async def _unimplemented(self, context: grpc.aio.ServicerContext) -> None:
        import grpc

        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "wfe serves registry credentials, not tokens"
        )

    async def FetchToken(
        self, request: auth_pb2.FetchTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.FetchTokenResponse:
        await self._unimplemented(context)
        raise AssertionError("not reached: abort raises")

    async def GetTokenAuthority(
        self, request: auth_pb2.GetTokenAuthorityRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetTokenAuthorityResponse:
        # UNIMPLEMENTED makes BuildKit fall back to Credentials and fetch tokens itself.
        await self._unimplemented(context)
        raise AssertionError("not reached: abort raises")

    async def VerifyTokenAuthority(
        self, request: auth_pb2.VerifyTokenAuthorityRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.VerifyTokenAuthorityResponse:
        await self._unimplemented(context)
        raise AssertionError("not reached: abort raises")


_UNAUTHORIZED = re.compile(
    r"401 unauthorized|unauthorized|authentication required|authorization failed|"
    r"insufficient_scope|denied: requested access",
    re.I,
)


def unauthorized_hint(message: str, servicer: AuthServicer | None) -> str | None:
    """A sentence explaining a registry "unauthorized" build failure, or None.

    Names the registry host(s) BuildKit asked credentials for and where they came from
    (the step's registry_auth, a credential helper, config.json or nothing), never the secret.
    Meant to be appended to the build error by the step.
    """
    if not _UNAUTHORIZED.search(message):
        return None
    if servicer is None or not servicer.origins:
        return (
            "the registry refused access: no registry credentials were requested or "
            "configured; add the registry host to registry_auth"
        )
    parts = []
    for host, origin in servicer.origins.items():
        credential = servicer.answered(host)
        who = (
            "anonymously"
            if credential.anonymous
            else f"as {credential.username or 'an identity token'}"
        )
        parts.append(f"{host} {who} (from {origin})")
    return (
        "the registry refused the credentials: "
        + "; ".join(parts)
        + ". Check the username and password in registry_auth (or docker login)"
    )


#: Methods to advertise in ``x-docker-expose-session-grpc-method`` (not checked by the daemon).
AUTH_METHODS = (
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
)


def add_auth_servicer(server: grpc.aio.Server, servicer: AuthServicer) -> None:
    """Register ``servicer`` on a session server (grpc.aio)."""
    from wfe_buildkit._pb import auth_pb2_grpc

    auth_pb2_grpc.add_AuthServicer_to_server(servicer, server)  # type: ignore[no-untyped-call,unused-ignore]


@attrs.define
class AuthService:
    """The session plug-in (``wfe_buildkit.session.SessionService``) serving registry auth.

    Pass it in ``SolveOpt.services``; it replaces the session's built-in Auth service.
    """

    servicer: AuthServicer
    methods: Sequence[str] = AUTH_METHODS

    def register(self, server: grpc.aio.Server) -> None:
        add_auth_servicer(server, self.servicer)


def auth_service(sources: CredentialSources) -> AuthService:
    """An :class:`AuthService` answering from ``sources`` (see :func:`credential_sources`)."""
    return AuthService(AuthServicer(sources))
