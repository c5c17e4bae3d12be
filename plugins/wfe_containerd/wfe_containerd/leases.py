"""Leases: how a client keeps containerd's garbage collector away from work in progress.

Everything written during a pull (content, ingests, snapshots) and a container's rootfs snapshot
is created under a lease. A lease carries an expiry label, so one left behind by a crashed
process stops protecting anything after a while, and our run labels, so ``wfe gc`` can find it.
"""

from __future__ import annotations

import contextlib
import datetime
import secrets
from collections.abc import Mapping

from wfe_containerd._pb.services import leases_pb2
from wfe_containerd.connection import CLEANUP_TIMEOUT, Connection
from wfe_containerd.errors import NotFoundError

EXPIRE_LABEL = "containerd.io/gc.expire"


async def create_lease(
    conn: Connection,
    prefix: str,
    *,
    expire_seconds: float = 3600.0,
    labels: Mapping[str, str] | None = None,
    lease_id: str | None = None,
) -> str:
    """Create a lease with a unique id starting with ``prefix`` (or exactly ``lease_id``)."""
    lease_id = lease_id or f"{prefix}-{secrets.token_hex(6)}"
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=expire_seconds)
    all_labels = {EXPIRE_LABEL: expires.strftime("%Y-%m-%dT%H:%M:%SZ"), **(labels or {})}
    await conn.call(conn.leases.Create, leases_pb2.CreateRequest(id=lease_id, labels=all_labels))
    return lease_id


async def delete_lease(conn: Connection, lease_id: str, *, sync: bool = False) -> None:
    """Delete a lease; one that is gone already is fine."""
    with contextlib.suppress(NotFoundError):
        await conn.call(
            conn.leases.Delete,
            leases_pb2.DeleteRequest(id=lease_id, sync=sync),
            timeout=CLEANUP_TIMEOUT,
        )


async def add_resource(conn: Connection, lease_id: str, kind: str, resource_id: str) -> None:
    """Put an existing object (``content`` digest, ``snapshots/<name>`` key) under a lease, so
    that the garbage collector keeps it while we build on it."""
    await conn.call(
        conn.leases.AddResource,
        leases_pb2.AddResourceRequest(
            id=lease_id, resource=leases_pb2.Resource(id=resource_id, type=kind)
        ),
    )
