"""The helpers that let cleanup finish under cancellation (used by the engine and shell)."""

from __future__ import annotations

import asyncio

import pytest

from wfe_core.cancellation import run_to_completion, wait_through_cancellation


def test_run_to_completion_finishes_the_work_then_reraises_the_cancellation() -> None:
    finished: list[str] = []

    async def cleanup() -> str:
        await asyncio.sleep(0.05)
        finished.append("cleanup")
        return "done"

    async def main() -> None:
        task = asyncio.create_task(run_to_completion(cleanup()))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)
        task.cancel()  # a second interrupt does not cut the cleanup short either
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished == ["cleanup"]

    asyncio.run(main())


def test_run_to_completion_returns_the_result_and_raises_its_errors() -> None:
    async def ok() -> int:
        return 3

    async def bad() -> None:
        raise ValueError("boom")

    assert asyncio.run(run_to_completion(ok())) == 3
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(run_to_completion(bad()))


def test_wait_through_cancellation_reports_whether_it_was_interrupted() -> None:
    async def main() -> tuple[bool, bool]:
        quiet = asyncio.ensure_future(asyncio.sleep(0, result=1))
        calm = await wait_through_cancellation(quiet)
        slow = asyncio.ensure_future(asyncio.sleep(0.05, result=2))
        waiter = asyncio.create_task(wait_through_cancellation(slow))
        await asyncio.sleep(0.01)
        waiter.cancel()
        return calm, await waiter

    calm, interrupted = asyncio.run(main())
    assert (calm, interrupted) == (False, True)
