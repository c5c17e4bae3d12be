"""SSH agent forwarding (``RUN --mount=type=ssh``), served over the session's SSH service.

The step config declares agents as ``ssh: [{id: default, agent: true} | {id, paths: [KEY...]}]``:

* ``agent: true`` forwards the user's running agent (``$SSH_AUTH_SOCK``);
* ``paths`` loads the listed private key files into a *private* ``ssh-agent`` started for this
  build in a 0700 temporary directory, and stops it (and removes the directory) when the build
  is over, so keys never outlive the build and the user's own agent is untouched.

BuildKit first calls ``CheckAgent{ID}`` (unknown id -> NOT_FOUND, which the daemon reports as
"unset ssh forward key"), then for each connection the RUN makes to its agent socket it opens a
``ForwardAgent`` stream (metadata ``buildkit.ssh.id``) carrying the raw agent protocol in
``BytesMessage`` chunks. The proxy here is *read-only*, like BuildKit's own Go provider: it
parses the agent protocol's length-prefixed frames and answers SSH_AGENT_FAILURE itself to
requests that would change the agent (add/remove keys, lock, extensions), so a build can list
keys and sign but never empty or lock the user's agent.

Key material is never logged; errors name the id and the key file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from wfe_buildkit.config_entries import entry_fields, resolve_under
from wfe_buildkit.errors import InvalidConfig, locate_problems

if TYPE_CHECKING:
    import grpc

    from wfe_buildkit._pb import ssh_pb2

log = logging.getLogger(__name__)

DEFAULT_ID = "default"
METADATA_ID_KEY = "buildkit.ssh.id"
AGENT_START_TIMEOUT_S = 5.0
#: OpenSSH refuses agent messages above 256 KiB; so do we.
MAX_AGENT_MESSAGE = 256 * 1024

# Agent protocol message numbers (draft-miller-ssh-agent).
SSH_AGENT_FAILURE = 5
SSH_AGENTC_REQUEST_IDENTITIES = 11
SSH_AGENTC_SIGN_REQUEST = 13
#: Requests the proxy forwards; everything else (add/remove/lock/extension...) is refused.
READ_ONLY_REQUESTS = frozenset({SSH_AGENTC_REQUEST_IDENTITIES, SSH_AGENTC_SIGN_REQUEST})
FAILURE_FRAME = struct.pack(">IB", 1, SSH_AGENT_FAILURE)


class SSHForwardError(InvalidConfig):
    """The step's ``ssh`` list is malformed or an agent cannot be provided."""


@attrs.frozen
class SSHSpec:
    """One forwarded agent: the user's (``agent=True``) or a private one holding ``paths``."""

    id: str = DEFAULT_ID
    agent: bool = False
    paths: tuple[Path, ...] = ()


def parse_ssh(raw: Any, *, where: str = "ssh") -> tuple[SSHSpec, ...]:
    """Validate the step's ``ssh`` list; raise one error listing every problem.

    Items are ``{id: NAME, agent: true}`` or ``{id: NAME, paths: [KEYFILE, ...]}``; ``id``
    defaults to ``default`` (what a bare ``RUN --mount=type=ssh`` asks for) and is unique.
    """
    if raw is None:
        return ()
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise SSHForwardError(
            f"{where}: expected a list like [{{id: default, agent: true}}] or "
            "[{id: default, paths: [~/.ssh/id_ed25519]}]"
        )
    problems: list[str] = []
    specs: list[SSHSpec] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        fields = entry_fields(item)
        if fields is None:
            problems.append(f"{here}: expected a mapping with id and agent: true or paths")
            continue
        unknown = sorted(set(fields) - {"id", "agent", "paths"})
        if unknown:
            problems.append(
                f"{here}: unknown key(s) {', '.join(unknown)} (allowed: id, agent, paths)"
            )
        ssh_id = fields.get("id", DEFAULT_ID)
        agent = fields.get("agent", False)
        paths = fields.get("paths")
        if not isinstance(ssh_id, str) or not ssh_id:
            problems.append(f"{here}.id: must be a non-empty string")
        elif ssh_id in seen:
            problems.append(f"{here}.id: {ssh_id!r} is already declared in {where}[{seen[ssh_id]}]")
        else:
            seen[ssh_id] = index
        if not isinstance(agent, bool):
            problems.append(f"{here}.agent: must be true or false")
        has_paths = paths is not None and paths != []
        if bool(agent) == has_paths:
            problems.append(f"{here}: set exactly one of agent: true or paths: [KEY FILES]")
        if paths is not None and (
            isinstance(paths, str | bytes)
            or not isinstance(paths, Sequence)
            or not all(isinstance(p, str | os.PathLike) and str(p) for p in paths)
        ):
            problems.append(f"{here}.paths: must be a list of private key file paths")
        if problems:
            continue
        specs.append(
            SSHSpec(
                id=ssh_id,
                agent=bool(agent),
                paths=tuple(Path(p) for p in (paths or ())),
            )
        )
    if problems:
        raise SSHForwardError("; ".join(problems), locate_problems(problems, where))
    return tuple(specs)


# ---------------------------------------------------------------------------------------------
# Agents


@attrs.define
class PrivateAgent:
    """An ``ssh-agent -D`` we started; :meth:`stop` kills it and removes its directory."""

    process: subprocess.Popen[bytes]
    directory: Path
    socket: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=3)
        if self.process.stderr is not None:  # the pipe that reports a failed start
            self.process.stderr.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_private_agent(
    ssh_id: str,
    keys: Sequence[Path],
    *,
    ssh_agent: str = "ssh-agent",
    ssh_add: str = "ssh-add",
) -> PrivateAgent:
    """Start a private agent in a fresh 0700 directory and load ``keys`` into it.

    Passphrase-protected keys cannot be loaded non-interactively and are reported as such.
    On any failure the agent is stopped and the directory removed before raising.
    """
    for key in keys:
        if not key.is_file():
            raise SSHForwardError(f"ssh[{ssh_id}]: key file {key} does not exist")
        if not os.access(key, os.R_OK):
            raise SSHForwardError(f"ssh[{ssh_id}]: key file {key} is not readable")
    directory = Path(tempfile.mkdtemp(prefix="wfe-ssh-"))
    os.chmod(directory, 0o700)
    socket_path = directory / "agent.sock"
    try:
        process = subprocess.Popen(
            [ssh_agent, "-D", "-a", str(socket_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        shutil.rmtree(directory, ignore_errors=True)
        raise SSHForwardError(
            f"ssh[{ssh_id}]: {ssh_agent} is not installed (install openssh-client)"
        ) from None
    agent = PrivateAgent(process=process, directory=directory, socket=socket_path)
    try:
        deadline = time.monotonic() + AGENT_START_TIMEOUT_S
        while not socket_path.exists():
            if process.poll() is not None:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise SSHForwardError(
                    f"ssh[{ssh_id}]: ssh-agent exited at start (code {process.returncode}): "
                    f"{stderr.strip()[:200]}"
                )
            if time.monotonic() > deadline:
                raise SSHForwardError(f"ssh[{ssh_id}]: ssh-agent did not create its socket")
            time.sleep(0.02)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "SSH_AUTH_SOCK": str(socket_path),
            "SSH_ASKPASS_REQUIRE": "never",
        }
        for key in keys:
            result = subprocess.run(
                [ssh_add, "-q", str(key)],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
            if result.returncode != 0:
                raise SSHForwardError(
                    f"ssh[{ssh_id}]: cannot load key file {key}: {_ssh_add_reason(result.stderr)}"
                )
        log.debug("private ssh-agent for id %r holds %d key(s)", ssh_id, len(keys))
        return agent
    except BaseException:
        agent.stop()
        raise


def _ssh_add_reason(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    lowered = text.lower()
    if "unprotected private key file" in lowered or "are too open" in lowered:
        return "its permissions are too open (chmod 600 it)"
    if "passphrase" in lowered:
        return (
            "it is protected by a passphrase, which cannot be entered during a build "
            "(load it into your agent and use agent: true)"
        )
    if "invalid format" in lowered or "no such identity" in lowered:
        return "not a private key ssh-add understands"
    first = text.strip().splitlines()
    return first[0][:200] if first else "ssh-add failed"


@attrs.define
class SSHForwarding:
    """The agent socket of each id for one build, and the private agents to stop afterwards."""

    sockets: dict[str, Path] = attrs.field(factory=dict)
    private_agents: list[PrivateAgent] = attrs.field(factory=list)

    def close(self) -> None:
        """Stop the private agents and remove their directories (idempotent)."""
        while self.private_agents:
            self.private_agents.pop().stop()

    def __enter__(self) -> SSHForwarding:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_ssh_forwarding(
    specs: Sequence[SSHSpec],
    *,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> SSHForwarding:
    """Resolve every spec to an agent socket, starting private agents for ``paths`` specs.

    Blocking (runs ssh-agent/ssh-add); call it through ``asyncio.to_thread`` from async code.
    Always pair with :meth:`SSHForwarding.close`.
    """
    env = os.environ if environ is None else environ
    forwarding = SSHForwarding()
    try:
        for spec in specs:
            if spec.agent:
                sock = env.get("SSH_AUTH_SOCK")
                if not sock:
                    raise SSHForwardError(
                        f"ssh[{spec.id}]: agent: true needs a running ssh-agent, but "
                        "SSH_AUTH_SOCK is not set (start one with `eval $(ssh-agent)` and "
                        "`ssh-add`, or list key files in paths)"
                    )
                if not Path(sock).exists():
                    raise SSHForwardError(
                        f"ssh[{spec.id}]: SSH_AUTH_SOCK points to {sock}, which does not exist "
                        "(is the agent still running?)"
                    )
                forwarding.sockets[spec.id] = Path(sock)
            else:
                keys = [resolve_under(p, base_dir) for p in spec.paths]
                agent = start_private_agent(spec.id, keys)
                forwarding.private_agents.append(agent)
                forwarding.sockets[spec.id] = agent.socket
    except BaseException:
        forwarding.close()
        raise
    return forwarding


# ---------------------------------------------------------------------------------------------
# The session service


class _FrameBuffer:
    """Splits a byte stream into agent-protocol frames (uint32 length + payload)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> bytes | None:
        if len(self._buf) < 4:
            return None
        (length,) = struct.unpack(">I", self._buf[:4])
        if length == 0 or length > MAX_AGENT_MESSAGE:
            raise SSHForwardError(f"malformed ssh-agent request (length {length})")
        if len(self._buf) < 4 + length:
            return None
        frame = bytes(self._buf[: 4 + length])
        del self._buf[: 4 + length]
        return frame

    @property
    def pending(self) -> int:
        return len(self._buf)


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(4)
    (length,) = struct.unpack(">I", header)
    if length > MAX_AGENT_MESSAGE:
        raise SSHForwardError(f"ssh-agent sent an oversized reply ({length} bytes)")
    return header + await reader.readexactly(length)


def _metadata_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == METADATA_ID_KEY and value:
            return str(value)
    return DEFAULT_ID


class SSHServicer:
    """``moby.sshforward.v1.SSH`` for one build's session (grpc.aio), read-only proxying.

    Not a subclass of the generated servicer so that importing this module (for config
    validation) does not import grpc; :func:`add_ssh_servicer` registers it.
    """

    def __init__(self, sockets: Mapping[str, Path]) -> None:
        self._sockets = dict(sockets)
        #: Counters for diagnostics and tests: forwarded and refused requests.
        self.forwarded = 0
        self.refused = 0

    def _socket(self, ssh_id: str) -> Path | None:
        return self._sockets.get(ssh_id or DEFAULT_ID)

    def _unknown(self, ssh_id: str) -> str:
        known = ", ".join(sorted(self._sockets)) or "none"
        return (
            f"no SSH agent is configured for id {ssh_id or DEFAULT_ID!r} (configured: {known}); "
            f"add {{id: {ssh_id or DEFAULT_ID}, agent: true}} or paths to the step's ssh list"
        )

    async def CheckAgent(
        self, request: ssh_pb2.CheckAgentRequest, context: grpc.aio.ServicerContext
    ) -> ssh_pb2.CheckAgentResponse:
        import grpc

        from wfe_buildkit._pb import ssh_pb2

        if self._socket(request.ID) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, self._unknown(request.ID))
        return ssh_pb2.CheckAgentResponse()

    async def ForwardAgent(
        self,
        request_iterator: AsyncIterator[ssh_pb2.BytesMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[ssh_pb2.BytesMessage]:
        import grpc

        from wfe_buildkit._pb import ssh_pb2

        ssh_id = _metadata_id(context)
        path = self._socket(ssh_id)
        if path is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, self._unknown(ssh_id))
            return
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError as exc:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"cannot connect to the SSH agent for id {ssh_id!r}: {exc.strerror}",
            )
            return
        frames = _FrameBuffer()
        try:
            async for message in request_iterator:
                if not message.data:
                    continue
                frames.feed(message.data)
                while (frame := frames.next_frame()) is not None:
                    if frame[4] not in READ_ONLY_REQUESTS:
                        self.refused += 1
                        log.debug("refused ssh-agent request type %d for %r", frame[4], ssh_id)
                        yield ssh_pb2.BytesMessage(data=FAILURE_FRAME)
                        continue
                    writer.write(frame)
                    await writer.drain()
                    reply = await _read_frame(reader)
                    self.forwarded += 1
                    yield ssh_pb2.BytesMessage(data=reply)
        except (SSHForwardError, asyncio.IncompleteReadError, ConnectionError) as exc:
            reason = str(exc) if isinstance(exc, SSHForwardError) else "the agent closed"
            log.warning("ssh forwarding for %r stopped: %s", ssh_id, reason)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"ssh forwarding ({ssh_id}): {reason}")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


SSH_METHODS = (
    "/moby.sshforward.v1.SSH/CheckAgent",
    "/moby.sshforward.v1.SSH/ForwardAgent",
)


def add_ssh_servicer(server: grpc.aio.Server, servicer: SSHServicer) -> None:
    """Register ``servicer`` on a session server (grpc.aio)."""
    from wfe_buildkit._pb import ssh_pb2_grpc

    ssh_pb2_grpc.add_SSHServicer_to_server(servicer, server)  # type: ignore[no-untyped-call,unused-ignore]


@attrs.define
class SSHService:
    """The session plug-in (``wfe_buildkit.session.SessionService``) forwarding SSH agents.

    Pass it in ``SolveOpt.services`` (and leave ``SolveOpt.ssh_agents`` empty).
    """

    servicer: SSHServicer
    methods: Sequence[str] = SSH_METHODS

    def register(self, server: grpc.aio.Server) -> None:
        add_ssh_servicer(server, self.servicer)


def ssh_service(forwarding: SSHForwarding) -> SSHService:
    """An :class:`SSHService` for ``forwarding``'s agent sockets (:func:`start_ssh_forwarding`)."""
    return SSHService(SSHServicer(forwarding.sockets))
