"""A small, blocking registry v2 client (standard library only), run in worker threads.

It resolves a tag to a descriptor (HEAD with the Accept header containerd sends, GET when HEAD
is not enough), fetches manifests (size-capped, digest-verified) and opens blobs as streams that
the caller reads in bounded chunks, resuming with ``Range`` when asked.

Authentication follows the registry's challenge: ``Bearer`` (a token from the realm, anonymous or
with HTTP Basic credentials, cached per scope) or ``Basic``. Redirects are followed by hand so
that the ``Authorization`` header is never sent to another host (blob downloads are often
redirected to a CDN or object store). Plain http is used for loopback hosts and for registries the
caller declares insecure; everything else is https with verification.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs

from wfe_containerd.credentials import Credentials
from wfe_containerd.errors import AuthError, ImageNotFoundError, RegistryError
from wfe_containerd.oci import ACCEPT_MANIFESTS, MAX_MANIFEST_BYTES, Descriptor, detect_media_type

USER_AGENT = "wfe-containerd/0.1"
MAX_REDIRECTS = 5
TIMEOUT = 60.0
RETRY_STATUSES = (408, 429, 502, 503, 504)
RETRY_DELAYS = (0.5, 1.0, 2.0)


def _retry_after(header: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds form), capped at 10 s."""
    if header and header.strip().isdigit():
        return min(float(header.strip()), 10.0)
    return default


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ::1, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` → ``("bearer", {"realm": ..., ...})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


@attrs.frozen
class _Token:
    value: str = attrs.field(repr=False)
    expires: float


class BlobStream:
    """An open blob download. ``read(n)`` returns at most n bytes, ``b""`` at the end."""

    def __init__(
        self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse, skip: int
    ) -> None:
        self._conn = conn
        self._response = response
        self._skip = skip

    def read(self, size: int) -> bytes:
        while self._skip:
            dropped = self._response.read(min(self._skip, 1 << 20))
            if not dropped:
                return b""
            self._skip -= len(dropped)
        return self._response.read(size)

    def close(self) -> None:
        self._response.close()
        self._conn.close()


class RegistryClient:
    """Talks to one registry host (``api_host``, maybe with a port) for one repository set."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        plain_http: bool | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.credentials = credentials
        self.plain_http = is_loopback(host) if plain_http is None else plain_http
        self.scheme = "http" if self.plain_http else "https"
        self._ssl = ssl_context or ssl.create_default_context()
        self._tokens: dict[str, _Token] = {}
        self._basic = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient({self.scheme}://{self.host})"

    # -- public operations -------------------------------------------------------------------

    def resolve(self, repo: str, obj: str) -> Descriptor:
        """The descriptor a tag or digest points at (digest, media type, size)."""
        path = f"/v2/{repo}/manifests/{obj}"
        headers = {"Accept": ACCEPT_MANIFESTS}
        conn, resp = self._request("HEAD", path, headers, repo)
        status = resp.status
        _discard(conn, resp)
        if status == 200:
            digest = resp.getheader("Docker-Content-Digest")
            length = resp.getheader("Content-Length")
            media = (resp.getheader("Content-Type") or "").split(";")[0].strip()
            if digest and length and media and media != "text/plain":
                return Descriptor(media, digest, int(length))
            if obj.startswith("sha256:") and length and media and media != "text/plain":
                return Descriptor(media, obj, int(length))
        elif status == 404:
            raise self._not_found(repo, obj)
        elif status not in (405, 400):
            raise RegistryError(f"registry {self.host} answered HTTP {status} to HEAD {path}")
        raw, media = self._get_manifest(repo, obj)
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if obj.startswith("sha256:") and obj != digest:
            raise RegistryError(
                f"registry {self.host} returned content for {obj} with digest {digest}"
            )
        return Descriptor(media, digest, len(raw))

    def fetch_manifest(self, repo: str, desc: Descriptor) -> bytes:
        """A manifest or index by digest, verified against the descriptor."""
        raw, _ = self._get_manifest(
            repo, desc.digest, accept=f"{desc.media_type}, {ACCEPT_MANIFESTS}"
        )
        verify(raw, desc, self.host)
        return raw

    def fetch_blob_bytes(
        self, repo: str, desc: Descriptor, limit: int = MAX_MANIFEST_BYTES
    ) -> bytes:
        """A small blob (an image config) read into memory and verified."""
        if desc.size > limit:
            raise RegistryError(f"blob {desc.digest} is {desc.size} bytes, over the {limit} limit")
        stream = self.open_blob(repo, desc)
        try:
            data = stream.read(desc.size + 1)
            while len(data) <= desc.size:
                more = stream.read(desc.size + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            stream.close()
        verify(data, desc, self.host)
        return data

    def open_blob(self, repo: str, desc: Descriptor, offset: int = 0) -> BlobStream:
        """Start downloading a blob, from ``offset`` (via Range if the server supports it)."""
        headers = {"Accept": f"{desc.media_type or 'application/octet-stream'}, */*"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        conn, resp = self._request("GET", f"/v2/{repo}/blobs/{desc.digest}", headers, repo)
        if resp.status == 206:
            return BlobStream(conn, resp, 0)
        if resp.status == 200:
            return BlobStream(conn, resp, offset)
        try:
            body = resp.read(2048)
        finally:
            _discard(conn, resp)
        if resp.status == 404:
            raise RegistryError(
                f"blob {desc.digest} of {self.host}/{repo} not found in the registry"
            )
        raise RegistryError(
            f"registry {self.host} answered HTTP {resp.status} fetching blob {desc.digest}: "
            f"{body.decode(errors='replace')[:200]}"
        )

    # -- internals ---------------------------------------------------------------------------

    def _not_found(self, repo: str, obj: str) -> ImageNotFoundError:
        sep = "@" if obj.startswith("sha256:") else ":"
        return ImageNotFoundError(
            f"image {self.host}/{repo}{sep}{obj} not found in registry {self.scheme}://{self.host}"
        )

    def _get_manifest(
        self, repo: str, obj: str, accept: str = ACCEPT_MANIFESTS
    ) -> tuple[bytes, str]:
        conn, resp = self._request("GET", f"/v2/{repo}/manifests/{obj}", {"Accept": accept}, repo)
        try:
            if resp.status == 404:
                raise self._not_found(repo, obj)
            if resp.status != 200:
                raise RegistryError(
                    f"registry {self.host} answered HTTP {resp.status} for manifest {repo}:{obj}"
                )
            raw = resp.read(MAX_MANIFEST_BYTES + 1)
            if len(raw) > MAX_MANIFEST_BYTES:
                raise RegistryError(f"manifest {repo}:{obj} on {self.host} is larger than 4 MiB")
            media = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        finally:
            conn.close()
        if not media or media in ("application/json", "application/octet-stream"):
            media = detect_media_type(raw, media)
        return raw, media

    def _connect(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=self._ssl)
        return http.client.HTTPConnection(netloc, timeout=TIMEOUT)

    def _request(
        self, method: str, path: str, headers: Mapping[str, str], repo: str
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request with auth, retrying once per challenge; follow redirects safely."""
        scope = f"repository:{repo}:pull"
        attempt = 0
        busy = 0
        while attempt < 3:
            auth = self._auth_header(scope)
            conn, resp = self._send(method, f"{self.scheme}://{self.host}{path}", headers, auth)
            if resp.status in RETRY_STATUSES and busy < len(RETRY_DELAYS):
                # Rate limited or briefly unavailable: wait (Retry-After, capped) and try again.
                delay = _retry_after(resp.getheader("Retry-After"), RETRY_DELAYS[busy])
                _discard(conn, resp)
                busy += 1
                time.sleep(delay)
                continue
            if resp.status != 401:
                return conn, resp
            attempt += 1
            challenge = resp.getheader("WWW-Authenticate") or ""
            _discard(conn, resp)
            if attempt == 3 or not self._handle_challenge(challenge, scope, had_auth=bool(auth)):
                break
        who = f"as {self.credentials.username!r}" if self.credentials else "anonymously"
        raise AuthError(
            f"registry {self.host} refused access to {repo} {who} (HTTP 401). Check the "
            "credentials in the step's registry_auth or in ~/.docker/config.json"
        )

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], auth: str | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        origin = urllib.parse.urlsplit(url)[:2]  # scheme and host: no https → http downgrade
        for _ in range(MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(url)
            conn = self._connect(parts.scheme, parts.netloc)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            sent = {"User-Agent": USER_AGENT, **headers}
            # Credentials go only to the origin that challenged us, never across a redirect.
            if auth and parts[:2] == origin:
                sent["Authorization"] = auth
            try:
                conn.request(method, target, headers=sent)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                hint = ""
                if isinstance(exc, ssl.SSLError) or "record layer" in str(exc).lower():
                    hint = " (if the registry speaks plain http, list it in insecure_registries)"
                raise RegistryError(
                    f"cannot reach registry {parts.scheme}://{parts.netloc}: {exc}{hint}"
                ) from None
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location") or ""
                _discard(conn, resp)
                if not location:
                    raise RegistryError(f"registry {parts.netloc} sent a redirect without Location")
                url = urllib.parse.urljoin(url, location)
                if resp.status == 303:
                    method = "GET"
                continue
            return conn, resp
        raise RegistryError(
            f"too many redirects from registry {self.host} (the last to {_without_secrets(url)})"
        )

    def _auth_header(self, scope: str) -> str | None:
        with self._lock:
            token = self._tokens.get(scope)
            if token and token.expires > time.monotonic():
                return f"Bearer {token.value}"
            if self._basic and self.credentials:
                return _basic(self.credentials)
        return None

    def _handle_challenge(self, header: str, scope: str, *, had_auth: bool) -> bool:
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if not self.credentials or (had_auth and self._basic):
                return False
            with self._lock:
                self._basic = True
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        if had_auth and params.get("error"):
            return False
        scopes = sorted({scope, *([params["scope"]] if params.get("scope") else [])})
        token, expires_in = self._fetch_token(params["realm"], params.get("service", ""), scopes)
        with self._lock:
            self._tokens[scope] = _Token(token, time.monotonic() + max(expires_in - 10, 10))
        return True

    def _fetch_token(self, realm: str, service: str, scopes: list[str]) -> tuple[str, int]:
        query = [("scope", s) for s in scopes]
        if service:
            query.insert(0, ("service", service))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise AuthError(f"registry {self.host} sent an unusable token realm {realm!r}")
        auth = _basic(self.credentials) if self.credentials and self.credentials.username else None
        conn, resp = self._send_token(url, auth)
        try:
            body = resp.read(1 << 20)
        finally:
            conn.close()
        if resp.status != 200:
            raise AuthError(
                f"token server {parts.netloc} for registry {self.host} refused the request "
                f"(HTTP {resp.status}); check the registry credentials"
            )
        try:
            data: dict[str, Any] = json.loads(body)
            token = str(data.get("token") or data.get("access_token") or "")
        except (ValueError, AttributeError):
            token = ""
        if not token:
            raise AuthError(f"token server {parts.netloc} for registry {self.host} sent no token")
        return token, int(data.get("expires_in") or 60)

    def _send_token(
        self, url: str, auth: str | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        # The realm is another origin in general: the credentials are meant for it explicitly.
        parts = urllib.parse.urlsplit(url)
        conn = self._connect(parts.scheme, parts.netloc)
        sent = {"User-Agent": USER_AGENT}
        if auth:
            sent["Authorization"] = auth
        try:
            conn.request(
                "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=sent
            )
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise AuthError(f"cannot reach token server {parts.netloc}: {exc}") from None


def _without_secrets(url: str) -> str:
    """``url`` fit for a message: redirect targets are often pre-signed object-store URLs whose
    query string (and any user:password@) is a credential, so both are left out."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?..." if parts.query else "")


def _discard(conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
    """Close a response we will not use (HEAD, a retry, a challenge, a redirect) and its
    connection. Each request has a connection of its own, so the body is not drained: reading it
    would only cost time and, with a hostile server, memory."""
    response.close()
    conn.close()


def _basic(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def verify(data: bytes, desc: Descriptor, host: str) -> None:
    """Check size and sha256 of fetched bytes against the descriptor."""
    if len(data) != desc.size:
        raise RegistryError(
            f"size mismatch for {desc.digest} from {host}: expected {desc.size}, got {len(data)}"
        )
    algorithm, _, expected = desc.digest.partition(":")
    if algorithm != "sha256":
        raise RegistryError(f"unsupported digest algorithm {algorithm!r} in {desc.digest}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise RegistryError(
            f"digest mismatch from {host}: expected {desc.digest}, got sha256:{actual}"
        )
