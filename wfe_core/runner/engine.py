"""The scheduler: runs a compiled :class:`~wfe_core.model.Workflow` on asyncio.

Semantics (the user-visible ones are in the design; these are the decisions behind them):

- Top-level steps run in order. A step that fails (or times out) without ``continue_on_error``
  stops the run: later steps are recorded as ``not_run``.
- A ``parallel`` block starts all its children at once; how many *executor* steps actually run
  at the same time is bounded by one semaphore of ``jobs`` slots shared by the whole run (blocks
  themselves take no slot, so nesting cannot deadlock; a step gives its slot back while it waits
  to retry). A child that fails without ``continue_on_error`` cancels its running siblings; the
  block then fails after every child (and its ``ensure``) has finished.
- ``when`` is evaluated at step start against inputs, earlier outputs and the environment. A step
  whose ``depends_on`` names a skipped step is skipped too (cascade), without evaluating
  anything; a skipped block skips its children.
- ``timeout`` bounds each attempt (``asyncio.timeout``, which cancels the body); a timed-out
  attempt counts as a failure and is retried like one. On a block it bounds the whole block.
- ``retry`` re-runs a failed attempt with a fresh body after ``RetryPolicy.delay(n)`` seconds.
  Interpolation and config errors are not retried: the same data would fail the same way.
- ``on_failure`` runs after the step failed (with or without ``continue_on_error``) and sees the
  failure's outputs as ``steps.NAME.outputs``. ``ensure`` runs after the step (and its
  ``on_failure``) whenever the step started: success, failure, timeout or cancellation. It is
  shielded, so an interrupted run still completes its ``ensure`` steps before stopping. A failing
  hook fails its step's unit (and so the run), unless the hook has ``continue_on_error``.
- Cancelling the run (:meth:`Run.cancel`, which the CLI calls on Ctrl-C) cancels the running
  steps; the run then ends with status ``cancelled`` and the workspace is still removed.

Per-step work is kept small (no copies of the outputs, no threads for async bodies, a reused
config when it has no references) so that thousands of steps per second are possible.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from wfe_core.cancellation import run_to_completion
from wfe_core.contracts import (
    ExecutionResult,
    ExecutorPlugin,
    JSONValue,
    ProgressEvent,
    StepContext,
    StepFailed,
    workflow_base_dir,
)
from wfe_core.model import RetryPolicy, Step, Workflow
from wfe_core.plugins import PluginRegistry
from wfe_core.runner.bodies import StepSetupError, build_config, call_body
from wfe_core.runner.conditions import ConditionError, evaluate, make_resolver
from wfe_core.runner.events import (
    EventCallback,
    RunEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    StepLog,
    StepProgress,
    StepRetrying,
    StepStarted,
)
from wfe_core.runner.results import RunResult, RunStatus, StepResult, StepState
from wfe_core.runner.workspace import create_workspace, new_run_id, remove_workspace

_NO_RETRY = RetryPolicy()


def default_jobs() -> int:
    """Default parallelism: the number of CPUs, at least 4 (steps mostly wait on I/O)."""
    return max(4, os.cpu_count() or 1)


@attrs.frozen
class RunOptions:
    """How to run: ``jobs`` concurrent executor steps, where the workspace goes and whether it
    is kept, the environment ``${{ env.X }}`` and ``when`` see (default: ``os.environ``)."""

    jobs: int = attrs.field(factory=default_jobs)
    keep_workspace: bool = False
    workspace_root: Path | None = None
    env: Mapping[str, str] | None = None
    run_id: str | None = None


def format_seconds(seconds: float) -> str:
    """``0.5`` → ``500ms``, ``90`` → ``90s``, for messages."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def iter_steps(
    steps: Iterable[Step], parent: str | None = None, role: str = "step"
) -> Iterable[tuple[Step, str | None, str]]:
    """Every step with its parent and role, depth first in declaration order: a step, then its
    parallel children, its ``on_failure``, its ``ensure``."""
    for step in steps:
        yield step, parent, role
        yield from iter_steps(step.parallel, step.name, "parallel")
        if step.on_failure is not None:
            yield from iter_steps((step.on_failure,), step.name, "on_failure")
        if step.ensure is not None:
            yield from iter_steps((step.ensure,), step.name, "ensure")


@attrs.frozen
class _Attempt:
    state: StepState
    outputs: Mapping[str, JSONValue] = attrs.field(factory=dict)
    outcome: str | None = None
    error: str | None = None
    retryable: bool = True
    started_at: float | None = None


class Run:
    """One execution of a workflow. ``await run.execute()`` returns its :class:`RunResult`;
    ``run.cancel()`` (from the loop's thread) interrupts it as Ctrl-C does."""

    def __init__(
        self,
        workflow: Workflow,
        registry: PluginRegistry,
        *,
        inputs: Mapping[str, JSONValue] | None = None,
        base_dir: Path | None = None,
        options: RunOptions | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        self.workflow = workflow
        self.registry = registry
        self.options = options or RunOptions()
        self.inputs: Mapping[str, JSONValue] = types.MappingProxyType(dict(inputs or {}))
        self.base_dir = base_dir or workflow_base_dir(workflow.file)
        self.run_id = self.options.run_id or new_run_id()
        self.env: Mapping[str, str] = types.MappingProxyType(
            dict(os.environ if self.options.env is None else self.options.env)
        )
        self._on_event = on_event
        self._outputs: dict[str, Mapping[str, JSONValue]] = {}
        self._outputs_view = types.MappingProxyType(self._outputs)
        self._results: dict[str, StepResult] = {}
        self._skipped: set[str] = set()
        self._started: set[str] = set()
        self._resolve = make_resolver(self.inputs, self._outputs, self.env)
        self._main: asyncio.Task[bool] | None = None
        self._cancel_requested = False
        self._first_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.get_ident()
        self._sem: asyncio.Semaphore | None = None
        self.workspace: Path | None = None
        self.display_error: Exception | None = None

    # -- public -------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the running steps; ``execute`` then returns a ``cancelled`` result."""
        self._cancel_requested = True
        if self._main is not None and not self._main.done():
            self._main.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel_requested

    async def execute(self) -> RunResult:
        """Run every step; always removes the workspace (unless kept) before returning."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._sem = asyncio.Semaphore(max(1, self.options.jobs))
        started_at, t0 = time.time(), time.monotonic()
        workspace = self.workspace = create_workspace(self.run_id, self.options.workspace_root)
        status = RunStatus.SUCCEEDED
        try:
            self._emit(RunStarted(self.run_id, self.workflow.id, workspace, started_at))
            self._main = asyncio.create_task(self._run_sequence(self.workflow.steps, None, "step"))
            if self._cancel_requested:
                self._main.cancel()
            try:
                ok = await self._main
            except asyncio.CancelledError:
                if not self._cancel_requested:
                    raise
                status = RunStatus.CANCELLED
            else:
                status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
        finally:
            if not self.options.keep_workspace:
                remove_workspace(workspace)
        result = RunResult(
            run_id=self.run_id,
            workflow_id=self.workflow.id,
            status=status,
            started_at=started_at,
            finished_at=time.time(),
            duration=time.monotonic() - t0,
            steps=self._collect(),
            workspace=workspace if self.options.keep_workspace else None,
            error="interrupted" if status is RunStatus.CANCELLED else self._first_error,
        )
        self._emit(RunFinished(result))
        return result

    # -- events -------------------------------------------------------------------------------

    def _emit(self, event: RunEvent) -> None:
        """Hand ``event`` to the callback. A display that fails (a closed pipe, a bug) must not
        change the run's outcome: its first error is kept in ``display_error`` and later events
        are still offered."""
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception as exc:
            if self.display_error is None:
                self.display_error = exc

    def _emit_from_any_thread(self, event: RunEvent) -> None:
        if self._on_event is None:
            return
        if threading.get_ident() == self._thread or self._loop is None:
            self._emit(event)
        else:
            self._loop.call_soon_threadsafe(self._emit, event)

    def _record(self, result: StepResult) -> StepResult:
        self._results[result.name] = result
        if result.state is StepState.SKIPPED:
            self._skipped.add(result.name)
        if result.state.is_failure and self._first_error is None:
            self._first_error = f"step {result.name!r} {result.state.value.replace('_', ' ')}"
            if result.error:
                self._first_error += f": {result.error}"
        self._emit(StepFinished(result))
        return result

    def _collect(self) -> tuple[StepResult, ...]:
        collected = []
        for step, parent, role in iter_steps(self.workflow.steps):
            result = self._results.get(step.name)
            if result is None:
                result = StepResult(step.name, StepState.NOT_RUN, step.type, role, parent)
            collected.append(result)
        return tuple(collected)

    # -- scheduling ---------------------------------------------------------------------------

    async def _run_sequence(self, steps: Iterable[Step], parent: str | None, role: str) -> bool:
        for step in steps:
            if not await self._run_unit(step, parent, role, None):
                return False
        return True

    async def _run_unit(
        self,
        step: Step,
        parent: str | None,
        role: str,
        on_fail: Callable[[], None] | None,
    ) -> bool:
        """A step with its hooks; True unless it failed in a way that stops its sequence."""
        told = False  # whether on_fail was called: once is enough
        try:
            result = await self._run_step(step, parent, role)
            ok = not result.state.is_failure or step.continue_on_error
            if not ok and on_fail is not None:  # at once: siblings stop before the hooks run
                on_fail()
                told = True
            if step.on_failure is not None:
                if result.state.is_failure:
                    hook_ok = await self._run_unit(step.on_failure, step.name, "on_failure", None)
                    ok = ok and hook_ok
                else:
                    self._skip_tree(
                        step.on_failure, f"{step.name!r} did not fail", step.name, "on_failure"
                    )
        except BaseException:
            if step.ensure is not None and step.name in self._started:
                await run_to_completion(self._run_unit(step.ensure, step.name, "ensure", None))
            raise
        if step.ensure is not None and step.name in self._started:
            ensure_ok = await run_to_completion(
                self._run_unit(step.ensure, step.name, "ensure", None)
            )
            ok = ok and ensure_ok
        if not ok and on_fail is not None and not told:  # a hook failed the unit
            on_fail()
        return ok

    def _skip_tree(self, step: Step, reason: str, parent: str | None, role: str) -> StepResult:
        """Record ``step``, its children and hooks as skipped (hooks of a skipped step too, so
        that steps reading their outputs cascade)."""
        first: StepResult | None = None
        for sub, sub_parent, sub_role in iter_steps((step,), parent, role):
            result = self._record(
                StepResult(
                    sub.name,
                    StepState.SKIPPED,
                    sub.type,
                    sub_role,
                    sub_parent,
                    reason=reason if sub is step else f"{step.name!r} was skipped",
                )
            )
            first = first or result
        assert first is not None
        return first

    async def _run_step(self, step: Step, parent: str | None, role: str) -> StepResult:
        for dependency in step.depends_on:
            if dependency in self._skipped:
                return self._skip_tree(
                    step, f"depends on skipped step {dependency!r}", parent, role
                )
        if step.when is not None:
            try:
                run_it = evaluate(step.when, self._resolve)
            except ConditionError as exc:
                return self._record(
                    StepResult(
                        step.name, StepState.FAILED, step.type, role, parent, error=f"when: {exc}"
                    )
                )
            if not run_it:
                return self._skip_tree(step, "when condition is false", parent, role)
        if step.is_parallel:
            return await self._run_block(step, parent, role)
        return await self._run_leaf(step, parent, role)

    async def _run_block(self, step: Step, parent: str | None, role: str) -> StepResult:
        self._started.add(step.name)
        started_at, t0 = time.time(), time.monotonic()
        self._emit(StepStarted(step.name, 1, started_at))
        tasks: list[asyncio.Task[bool]] = []
        sibling_failed = False

        def cancel_siblings() -> None:
            nonlocal sibling_failed
            sibling_failed = True
            current = asyncio.current_task()
            for task in tasks:
                if task is not current and not task.done():
                    task.cancel()

        def finish(state: StepState, error: str | None = None) -> StepResult:
            return self._record(
                StepResult(
                    step.name,
                    state,
                    None,
                    role,
                    parent,
                    1,
                    started_at,
                    time.time(),
                    time.monotonic() - t0,
                    error=error,
                )
            )

        for child in step.parallel:
            tasks.append(
                asyncio.create_task(self._run_unit(child, step.name, "parallel", cancel_siblings))
            )
        timeout = asyncio.timeout(step.timeout) if step.timeout is not None else None
        try:
            if timeout is None:
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            else:
                async with timeout:
                    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            finish(StepState.CANCELLED)
            raise
        except TimeoutError:
            if timeout is None or not timeout.expired():
                raise
            assert step.timeout is not None
            return finish(StepState.TIMED_OUT, f"timed out after {format_seconds(step.timeout)}")
        failed = self._failed_children(step, outcomes)
        if failed or sibling_failed:
            names = ", ".join(repr(name) for name in failed) or "a step"
            return finish(StepState.FAILED, f"{names} failed")
        return finish(StepState.SUCCEEDED)

    def _failed_children(self, block: Step, outcomes: list[bool | BaseException]) -> list[str]:
        """Names of the block's children whose unit failed (a cancelled one did not: it was
        stopped because a sibling failed). An exception, which only an engine bug produces, is
        also recorded as its child's failure, so that it is seen rather than lost."""
        failed: list[str] = []
        for child, outcome in zip(block.parallel, outcomes, strict=True):
            if outcome is False:
                failed.append(child.name)
            elif isinstance(outcome, BaseException) and not isinstance(
                outcome, asyncio.CancelledError
            ):
                failed.append(child.name)
                if isinstance(outcome, Exception):
                    self._record(
                        StepResult(
                            child.name,
                            StepState.FAILED,
                            child.type,
                            "parallel",
                            block.name,
                            error=f"internal error: {_describe(outcome)}",
                        )
                    )
        return failed

    async def _run_leaf(self, step: Step, parent: str | None, role: str) -> StepResult:
        assert step.type is not None
        plugin = self.registry.get(step.type)
        if plugin is None:
            problem = self.registry.error(step.type)
            message = str(problem) if problem else f"unknown step type {step.type!r}"
            return self._record(
                StepResult(step.name, StepState.FAILED, step.type, role, parent, error=message)
            )
        policy = step.retry or _NO_RETRY
        started_at: float | None = None
        t0 = time.monotonic()
        attempt = 0
        outputs: Mapping[str, JSONValue] = {}
        outcome: str | None = None
        error: str | None = None
        state = StepState.FAILED

        def finish(
            final: StepState,
            *,
            outcome: str | None = None,
            error: str | None = None,
            reason: str | None = None,
        ) -> StepResult:
            """Record the step's result as of now (attempts, timing and outputs so far)."""
            return self._record(
                StepResult(
                    step.name,
                    final,
                    step.type,
                    role,
                    parent,
                    attempts=attempt,
                    started_at=started_at,
                    finished_at=time.time(),
                    duration=time.monotonic() - t0,
                    outputs=outputs,
                    outcome=outcome,
                    error=error,
                    reason=reason,
                )
            )

        try:
            while True:
                attempt += 1
                done = await self._attempt(step, plugin, attempt)
                state, outputs, outcome, error = done.state, done.outputs, done.outcome, done.error
                if started_at is None:
                    started_at = done.started_at
                if state is StepState.SUCCEEDED or not done.retryable:
                    break
                if attempt >= policy.max_attempts:
                    break
                delay = policy.delay(attempt)
                self._emit(StepRetrying(step.name, attempt, delay, error or state.value))
                if delay > 0:
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            never = step.name not in self._started
            reason = "cancelled before it started" if never else "cancelled"
            finish(StepState.CANCELLED, reason=reason)
            raise
        # Recorded even when empty: a step that ran has outputs (maybe none), which is what a
        # reference to a missing key of it must say, not "it has not run".
        self._outputs[step.name] = outputs
        return finish(state, outcome=outcome, error=error)

    def _context(self, step: Step, config: Any, attempt: int) -> StepContext:
        """The step's view of the run; its sinks turn log chunks and progress into events (from
        whatever thread a sync body calls them on)."""
        name = step.name
        on_event = self._on_event

        def log(stream: str, text: str) -> None:
            if on_event is not None:
                self._emit_from_any_thread(StepLog(name, stream, text))

        def progress(event: ProgressEvent) -> None:
            if on_event is not None:
                self._emit_from_any_thread(StepProgress(name, event))

        assert self.workspace is not None
        return StepContext(
            run_id=self.run_id,
            workflow_id=self.workflow.id,
            step_name=name,
            attempt=attempt,
            config=config,
            inputs=self.inputs,
            outputs=self._outputs_view,
            workspace=self.workspace,
            base_dir=self.base_dir,
            log_sink=log,
            progress_sink=progress,
            timeout=step.timeout,
        )

    async def _attempt(self, step: Step, plugin: ExecutorPlugin, attempt: int) -> _Attempt:
        """One attempt of an executor step, from config to result."""
        try:
            config = build_config(
                plugin, step, inputs=self.inputs, outputs=self._outputs_view, env=self.env
            )
            body = plugin.create(config)
        except StepSetupError as exc:
            return _Attempt(StepState.FAILED, error=str(exc), retryable=False)
        except Exception as exc:
            message = f"could not create the step: {_describe(exc)}"
            return _Attempt(StepState.FAILED, error=message, retryable=False)
        ctx = self._context(step, config, attempt)
        name = step.name
        assert self._sem is not None
        async with self._sem:
            self._started.add(name)
            now = time.time()
            self._emit(StepStarted(name, attempt, now))
            timeout = asyncio.timeout(step.timeout) if step.timeout is not None else None
            outputs: Mapping[str, JSONValue] = {}
            outcome: str | None = None
            error: str | None = None
            try:
                if timeout is None:
                    result: ExecutionResult = await call_body(body, ctx)
                else:
                    async with timeout:
                        result = await call_body(body, ctx)
            except StepFailed as exc:
                state, outputs, error = StepState.FAILED, exc.outputs, exc.message or "failed"
            except Exception as exc:  # cancellation is a BaseException: it propagates
                state, error = StepState.FAILED, _describe(exc)
            else:
                state, outputs, outcome, error = (
                    StepState.SUCCEEDED,
                    result.outputs,
                    result.outcome,
                    None,
                )
            if timeout is not None and timeout.expired():
                assert step.timeout is not None
                state = StepState.TIMED_OUT
                error = f"timed out after {format_seconds(step.timeout)}"
        return _Attempt(state, outputs, outcome, error, True, now)


async def run_workflow(
    workflow: Workflow,
    registry: PluginRegistry,
    *,
    inputs: Mapping[str, JSONValue] | None = None,
    base_dir: Path | None = None,
    options: RunOptions | None = None,
    on_event: EventCallback | None = None,
) -> RunResult:
    """Run ``workflow`` to the end and return its result (a convenience over :class:`Run`)."""
    run = Run(
        workflow, registry, inputs=inputs, base_dir=base_dir, options=options, on_event=on_event
    )
    return await run.execute()


__all__ = ["Run", "RunOptions", "default_jobs", "format_seconds", "iter_steps", "run_workflow"]
