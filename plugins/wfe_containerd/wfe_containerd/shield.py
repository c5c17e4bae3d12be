"""Making cleanup survive asyncio cancellation.

A cancelled coroutine may have a gRPC call in flight whose effect (a lease, a container, a task)
lands on the daemon after the cancellation. Cleanup must wait for such calls to settle and must
itself run to the end even if the caller is cancelled again: :func:`settle_then` does the first,
``wfe_core.cancellation.run_to_completion`` (here :data:`finish_shielded`) the second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from wfe_core.cancellation import run_to_completion

T = TypeVar("T")
SETTLE_TIMEOUT = 60.0


async def settle_then(pending: asyncio.Future[Any], then: Awaitable[T]) -> T:
    """Wait until ``pending`` is done (whatever its outcome; at most ``SETTLE_TIMEOUT``), then
    run ``then``."""
    await asyncio.wait({pending}, timeout=SETTLE_TIMEOUT)
    return await then


finish_shielded = run_to_completion
"""Run an awaitable to completion even if we are cancelled meanwhile, then re-raise the
cancellation: the engine's helper, under the name this package has always used."""
