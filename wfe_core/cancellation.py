"""Letting cleanup finish when the task doing it is cancelled (Ctrl-C, a timeout, a failed sibling).

``asyncio.shield`` alone is not enough: it protects the inner work, but the awaiting task still
gets ``CancelledError`` at once and would move on while the cleanup runs unobserved. The
helpers here keep waiting until the work is done and only then pass the cancellation on, so that
``ensure`` steps complete and process groups are reaped before a run stops. The engine and the
``shell`` executor both rely on this; it lives here so that neither imports the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_through_cancellation(future: asyncio.Future[Any]) -> bool:
    """Wait until ``future`` is done, however often the waiting task is cancelled meanwhile.

    Returns whether a cancellation arrived, for the caller to re-raise once its own cleanup is
    done. The future's outcome is left in it (read it with ``future.result()``).
    """
    interrupted = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            interrupted = True
        except Exception:
            pass  # the future's own failure: it is done, and result() raises it
    return interrupted


async def run_to_completion(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to the end even if the awaiting task is cancelled meanwhile; then
    re-raise that cancellation (or the awaitable's own exception, which takes precedence)."""
    future = asyncio.ensure_future(awaitable)
    interrupted = await wait_through_cancellation(future)
    result = future.result()
    if interrupted:
        raise asyncio.CancelledError
    return result


__all__ = ["run_to_completion", "wait_through_cancellation"]
