"""Building a step's body from its config and calling it, sync or async.

The config is interpolated and structured at step start (``${{ steps.X.outputs.K }}`` only has a
value then), and a fresh body is created for every attempt. A config without any reference was
already structured by the compiler with the same data, so that object is reused: this keeps the
per-step cost of large workflows low.

Sync bodies (a plain ``def run``) run in a worker thread of the loop's default executor so they
do not block other steps. Python cannot interrupt a thread: when such a step times out or is
cancelled, the run moves on (the step is recorded as timed out or cancelled) but the thread keeps
running until ``run`` returns. Executors that run long work should have an ``async def run``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any

from wfe_core.contracts import ExecutionResult, ExecutorPlugin, StepBody, StepContext
from wfe_core.model import Step


class StepSetupError(Exception):
    """The step could not be prepared (interpolation or config error): retrying cannot help."""


def holds_references(data: Any) -> bool:
    """Whether any string value inside ``data`` holds a ``${{ ... }}`` reference: only then must
    the config be rebuilt when the step starts. Mapping keys do not count, since they are never
    interpolated (unlike :func:`wfe_core.contracts.has_reference`, which looks at one string)."""
    if isinstance(data, str):
        return "${{" in data
    if isinstance(data, Mapping):
        return any(holds_references(v) for v in data.values())
    if isinstance(data, list | tuple):
        return any(holds_references(item) for item in data)
    return False


def build_config(
    plugin: ExecutorPlugin,
    step: Step,
    *,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str],
) -> Any:
    """The step's config object with every reference resolved (raises :class:`StepSetupError`)."""
    if step.config is not None and not holds_references(step.raw_config):
        return step.config
    from wfe_core.compiler.config import ConfigError, format_path, structure_config
    from wfe_core.interpolate import InterpolationError, interpolate

    try:
        data = interpolate(dict(step.raw_config), inputs=inputs, outputs=outputs, env=env)
    except InterpolationError as exc:
        raise StepSetupError(f"config: {exc}") from None
    try:
        return structure_config(plugin, data)
    except ConfigError as exc:
        # Keys are named as the compiler names them (``config.mounts[0].source``).
        problems = "; ".join(
            f"config.{format_path(path)}: {message}" if path else message
            for path, message in exc.messages
        )
        raise StepSetupError(problems or str(exc)) from None


_IS_ASYNC: dict[type[Any], bool] = {}


def _is_async(body: StepBody) -> bool:
    cls = type(body)
    known = _IS_ASYNC.get(cls)
    if known is None:
        known = _IS_ASYNC[cls] = inspect.iscoroutinefunction(cls.run)
    return known


async def call_body(body: StepBody, ctx: StepContext) -> ExecutionResult:
    """Run ``body`` (in a worker thread if its ``run`` is sync) and check what it returned."""
    if _is_async(body):
        result: Any = await body.run(ctx)  # type: ignore[misc]
    else:
        result = await asyncio.to_thread(body.run, ctx)
        if inspect.isawaitable(result):
            result = await result
    if result is None:
        return ExecutionResult()
    if not isinstance(result, ExecutionResult):
        raise TypeError(f"run() returned {type(result).__name__}, not an ExecutionResult")
    return result


__all__ = ["StepSetupError", "build_config", "call_body", "holds_references"]
