"""Making cleanup survive asyncio cancellation.

A cancelled coroutine may have a gRPC call in flight whose effect (a lease, a container, a task)
lands on the daemon after the cancellation. Cleanup must wait for such calls to settle and must
itself run to the end even if the caller is cancelled again; these two helpers do that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
SETTLE_TIMEOUT = 60.0


async def settle_then(pending: asyncio.Future[Any], then: Awaitable[T]) -> T:
    """Wait until ``pending`` is done (whatever its outcome; at most ``SETTLE_TIMEOUT``), then
    run ``then``."""
    await asyncio.wait({pending}, timeout=SETTLE_TIMEOUT)
    return await then


async def finish_shielded(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to completion even if we are cancelled meanwhile, then re-raise."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
