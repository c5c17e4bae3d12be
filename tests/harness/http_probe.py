"""Tiny HTTP helpers for readiness checks: Docker's API on a unix socket, registries on TCP.

Only the standard library, so the harness works before any project code exists.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
from typing import Any


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket (Docker Engine's API socket)."""

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        super().__init__("docker", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


def unix_get(socket_path: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``path`` on a unix-socket HTTP server; returns (status, body)."""
    return unix_request(socket_path, "GET", path, timeout=timeout)


def unix_request(
    socket_path: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """``method path`` on a unix-socket HTTP server, ``body`` sent as JSON when not None."""
    conn = UnixHTTPConnection(socket_path, timeout=timeout)
    headers = {}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def tcp_get(
    host: str,
    path: str,
    *,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """GET ``http://host{path}`` with optional basic auth; returns (status, body)."""
    conn = http.client.HTTPConnection(host, timeout=timeout)
    headers = dict(headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
