"""Registry credentials: from the step's ``registry_auth`` or from ``~/.docker/config.json``.

The Docker config file is read the way the docker CLI writes it: ``auths`` entries (base64
``auth`` or ``username``/``password``, or an ``identitytoken``), a per-registry ``credHelpers``
program or a default ``credsStore`` (``docker-credential-<name> get`` with the host on stdin).
Secrets are kept out of ``repr`` so they cannot end up in logs or error messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import attrs

from wfe_containerd.errors import AuthError

_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@attrs.frozen
class Credentials:
    """A username and a secret; ``identity_token`` is an OAuth2 refresh token."""

    username: str = ""
    password: str = attrs.field(default="", repr=False)
    identity_token: str = attrs.field(default="", repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"


def _host_keys(host: str) -> list[str]:
    if host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        return list(_HUB_KEYS)
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def from_docker_config(host: str, path: Path | None = None) -> Credentials | None:
    """Credentials for ``host`` from the Docker config file, or None if it has none."""
    path = path or docker_config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read Docker config {path}: {exc}") from None
    if not isinstance(data, dict):
        return None
    keys = _host_keys(host)
    helpers = data.get("credHelpers") or {}
    for key in keys:
        if isinstance(helpers, dict) and key in helpers:
            return from_helper(str(helpers[key]), key)
    auths = data.get("auths") or {}
    for key in keys:
        entry = auths.get(key) if isinstance(auths, dict) else None
        if isinstance(entry, dict):
            creds = _from_auth_entry(entry, path, key)
            if creds is not None:
                return creds
    store = data.get("credsStore")
    if isinstance(store, str) and store:
        return from_helper(store, keys[0], missing_ok=True)
    return None


def _from_auth_entry(entry: Mapping[str, object], path: Path, key: str) -> Credentials | None:
    token = str(entry.get("identitytoken") or "")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, _, password = base64.b64decode(auth).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError(f"the 'auth' entry for {key} in {path} is not valid base64") from None
        return Credentials(user, password, token)
    username, secret = entry.get("username"), entry.get("password")
    if isinstance(username, str) and username:
        return Credentials(username, str(secret or ""), token)
    if token:
        return Credentials("", "", token)
    return None


def from_helper(helper: str, server: str, *, missing_ok: bool = False) -> Credentials | None:
    """Ask ``docker-credential-<helper> get`` for ``server``'s credentials."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=30, check=False
        )
    except FileNotFoundError:
        if missing_ok:
            return None
        raise AuthError(
            f"credential helper {program} (configured for {server} in the Docker config) is not "
            "installed or not on PATH"
        ) from None
    except subprocess.TimeoutExpired:
        raise AuthError(f"credential helper {program} did not answer within 30 s") from None
    if proc.returncode != 0:
        text = proc.stdout.decode(errors="replace").strip()
        if "credentials not found" in text.lower() or missing_ok:
            return None
        raise AuthError(f"credential helper {program} failed for {server}: {text[:200]}")
    try:
        data = json.loads(proc.stdout)
        username, secret = str(data.get("Username", "")), str(data.get("Secret", ""))
    except (ValueError, AttributeError):
        raise AuthError(
            f"credential helper {program} returned something that is not JSON"
        ) from None
    if username == "<token>":
        return Credentials("", "", secret)
    return Credentials(username, secret)


def lookup(
    host: str, explicit: Mapping[str, Credentials] | None = None, config_path: Path | None = None
) -> Credentials | None:
    """Credentials for ``host``: the explicit mapping first (keyed by the host, or by it as a
    URL the way Docker config keys are written; Docker Hub under any of its names), then the
    Docker config file."""
    if explicit:
        for key in _host_keys(host):
            if key in explicit:
                return explicit[key]
    return from_docker_config(host, config_path)
