"""Runner tests with in-process executors and hand-built steps (no YAML involved)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from wfe_core.contracts import ExecutionResult, ExecutorPlugin, StepBody, StepContext, StepFailed
from wfe_core.model import Compare, InputSpec, Location, RetryPolicy, Step, Workflow
from wfe_core.plugins import PluginRegistry
from wfe_core.runner import (
    InputError,
    Run,
    RunOptions,
    RunResult,
    RunStatus,
    StepLog,
    StepRetrying,
    StepState,
    prepare_inputs,
    run_result_to_json,
    run_workflow,
)

LOC = Location("test.yaml", 1, 1)


@attrs.define
class Recorder:
    """What the probe executor saw: start/end order, concurrency, attempts, cancellations."""

    events: list[tuple[str, str]] = attrs.field(factory=list)
    running: int = 0
    max_running: int = 0
    attempts: dict[str, list[float]] = attrs.field(factory=dict)
    contexts: dict[str, StepContext] = attrs.field(factory=dict)
    seen: dict[str, set[str]] = attrs.field(factory=dict)

    def order(self, kind: str = "start") -> list[str]:
        return [name for event, name in self.events if event == kind]


@attrs.frozen
class ProbeConfig:
    sleep: float = 0.0
    fail: bool = False
    fail_attempts: int = 0
    outputs: dict[str, Any] = attrs.field(factory=dict)
    crash: bool = False
    swallow_cancel: bool = False


def probe_plugin(recorder: Recorder) -> ExecutorPlugin:
    class Probe(StepBody):
        def __init__(self, config: ProbeConfig) -> None:
            self.config = config

        async def run(self, ctx: StepContext) -> ExecutionResult:
            name = ctx.step_name
            recorder.events.append(("start", name))
            recorder.attempts.setdefault(name, []).append(time.monotonic())
            recorder.contexts[name] = ctx
            recorder.seen[name] = set(ctx.outputs)
            recorder.running += 1
            recorder.max_running = max(recorder.max_running, recorder.running)
            try:
                ctx.log("stdout", f"hello from {name}\n")
                if self.config.sleep:
                    try:
                        await asyncio.sleep(self.config.sleep)
                    except asyncio.CancelledError:
                        recorder.events.append(("cancelled", name))
                        if not self.config.swallow_cancel:
                            raise
                if self.config.crash:
                    raise RuntimeError("boom")
                if self.config.fail or ctx.attempt <= self.config.fail_attempts:
                    raise StepFailed(
                        f"{name} failed", outputs={"why": "asked", **self.config.outputs}
                    )
                return ExecutionResult(outputs={**self.config.outputs, "attempt": ctx.attempt})
            finally:
                recorder.running -= 1
                recorder.events.append(("end", name))

    return ExecutorPlugin("probe", ProbeConfig, Probe, description="test probe")


@attrs.frozen
class SyncConfig:
    value: str = "x"


class SyncBody(StepBody):
    def __init__(self, config: SyncConfig) -> None:
        self.config = config

    def run(self, ctx: StepContext) -> ExecutionResult:
        ctx.log("stdout", "sync\n")
        return ExecutionResult(outputs={"value": self.config.value})


SYNC_PLUGIN = ExecutorPlugin("sync", SyncConfig, SyncBody)


@attrs.frozen
class NoopConfig:
    pass


class NoopBody(StepBody):
    def __init__(self, config: NoopConfig) -> None:
        pass

    async def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult()


NOOP_PLUGIN = ExecutorPlugin("noop", NoopConfig, NoopBody, description="does nothing")


def probe(
    name: str,
    *,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    continue_on_error: bool = False,
    on_failure: Step | None = None,
    ensure: Step | None = None,
    when: Any = None,
    depends_on: frozenset[str] = frozenset(),
    **config: Any,
) -> Step:
    return Step(
        name=name,
        location=LOC,
        type="probe",
        config=ProbeConfig(**config),
        raw_config=dict(config),
        when=when,
        timeout=timeout,
        retry=retry,
        continue_on_error=continue_on_error,
        on_failure=on_failure,
        ensure=ensure,
        depends_on=depends_on,
    )


def block(name: str, *children: Step, **kw: Any) -> Step:
    return Step(name=name, location=LOC, parallel=tuple(children), **kw)


def workflow(*steps: Step, inputs: Any = ()) -> Workflow:
    return Workflow("wf", LOC, tuple(steps), inputs=tuple(inputs))


def registry(recorder: Recorder, *extra: ExecutorPlugin) -> PluginRegistry:
    return PluginRegistry(
        [probe_plugin(recorder), SYNC_PLUGIN, NOOP_PLUGIN, *extra], discover=False
    )


def states(result: Any) -> Mapping[str, str]:
    return {step.name: step.state.value for step in result.steps}


def run(wf: Workflow, reg: PluginRegistry, **kw: Any) -> RunResult:
    events: list[Any] = kw.pop("events", [])
    return asyncio.run(run_workflow(wf, reg, on_event=events.append, **kw))


def test_steps_run_in_order_and_outputs_flow() -> None:
    rec = Recorder()
    wf = workflow(probe("a", outputs={"x": 1}), probe("b"), probe("c"))
    result = run(wf, registry(rec))
    assert result.status is RunStatus.SUCCEEDED
    assert rec.events == [(k, n) for n in "abc" for k in ("start", "end")]
    assert result.step("a").outputs == {"x": 1, "attempt": 1}
    assert rec.contexts["c"].outputs["a"] == {"x": 1, "attempt": 1}
    assert rec.seen["c"] == {"a", "b"}
    step = result.step("a")
    assert step.attempts == 1 and step.duration is not None and step.started_at is not None


def test_failure_stops_the_run() -> None:
    rec = Recorder()
    result = run(workflow(probe("a"), probe("b", fail=True), probe("c")), registry(rec))
    assert result.status is RunStatus.FAILED
    assert states(result) == {"a": "succeeded", "b": "failed", "c": "not_run"}
    assert result.step("b").error == "b failed"
    assert result.step("b").outputs == {"why": "asked"}
    assert result.error == "step 'b' failed: b failed"


def test_unexpected_exception_is_a_failure_with_its_type() -> None:
    result = run(workflow(probe("a", crash=True)), registry(Recorder()))
    assert result.step("a").state is StepState.FAILED
    assert result.step("a").error == "RuntimeError: boom"


def test_sync_bodies_run_in_a_thread_and_log_safely() -> None:
    events: list[Any] = []
    step = Step("s", LOC, type="sync", config=SyncConfig("v"), raw_config={"value": "v"})
    result = run(workflow(step), registry(Recorder()), events=events)
    assert result.step("s").outputs == {"value": "v"}
    assert [e.text for e in events if isinstance(e, StepLog)] == ["sync\n"]


def test_parallel_block_respects_jobs() -> None:
    rec = Recorder()
    children = [probe(f"p{i}", sleep=0.02) for i in range(8)]
    result = run(workflow(block("par", *children)), registry(rec), options=RunOptions(jobs=3))
    assert result.ok
    assert rec.max_running == 3
    assert result.step("par").state is StepState.SUCCEEDED
    assert result.step("p3").parent == "par" and result.step("p3").role == "parallel"


def test_parallel_failure_cancels_siblings_and_runs_their_ensure() -> None:
    rec = Recorder()
    par = block(
        "par",
        probe("slow", sleep=5, ensure=probe("slow-cleanup")),
        probe("bad", sleep=0.01, fail=True),
    )
    t0 = time.monotonic()
    result = run(workflow(par, probe("after")), registry(rec), options=RunOptions(jobs=4))
    assert time.monotonic() - t0 < 2
    assert states(result) == {
        "par": "failed",
        "slow": "cancelled",
        "slow-cleanup": "succeeded",
        "bad": "failed",
        "after": "not_run",
    }
    assert ("cancelled", "slow") in rec.events
    assert result.step("par").error == "'bad' failed"


def test_parallel_continue_on_error_does_not_cancel() -> None:
    rec = Recorder()
    par = block("par", probe("slow", sleep=0.05), probe("bad", fail=True, continue_on_error=True))
    result = run(workflow(par), registry(rec))
    assert result.ok
    assert states(result) == {"par": "succeeded", "slow": "succeeded", "bad": "failed"}


def test_nested_parallel_blocks_do_not_deadlock_with_one_job() -> None:
    inner = block("inner", probe("i1"), probe("i2"))
    result = run(
        workflow(block("outer", inner, probe("o1"))),
        registry(Recorder()),
        options=RunOptions(jobs=1),
    )
    assert result.ok


def test_when_and_cascade_skip() -> None:
    rec = Recorder()
    wf = workflow(
        probe("a", outputs={"code": "0"}),
        probe("b", when=Compare("steps.a.outputs.code", "equals", 1)),
        probe("c", depends_on=frozenset({"b"})),
        probe("d", when=Compare("steps.a.outputs.code", "equals", 0)),
        probe("e", when=Compare("inputs.flag", "equals", True)),
        block("blk", probe("b1"), when=Compare("steps.b.outputs.x", "is_not_null")),
    )
    result = run(wf, registry(rec), inputs={"flag": True})
    assert result.ok
    assert states(result) == {
        "a": "succeeded",
        "b": "skipped",
        "c": "skipped",
        "d": "succeeded",
        "e": "succeeded",
        "blk": "skipped",
        "b1": "skipped",
    }
    assert result.step("b").reason == "when condition is false"
    assert result.step("c").reason == "depends on skipped step 'b'"
    assert "b" not in rec.order() and "c" not in rec.order()


def test_condition_type_error_fails_the_step() -> None:
    wf = workflow(
        probe("a", outputs={"v": "abc"}), probe("b", when=Compare("steps.a.outputs.v", "gt", 1))
    )
    result = run(wf, registry(Recorder()))
    assert result.step("b").state is StepState.FAILED
    assert "needs a number" in (result.step("b").error or "")


def test_timeout_cancels_the_body() -> None:
    rec = Recorder()
    t0 = time.monotonic()
    result = run(workflow(probe("slow", sleep=5, timeout=0.05)), registry(rec))
    assert time.monotonic() - t0 < 2
    assert result.step("slow").state is StepState.TIMED_OUT
    assert result.step("slow").error == "timed out after 50ms"
    assert ("cancelled", "slow") in rec.events
    assert result.status is RunStatus.FAILED


def test_timeout_even_when_the_body_swallows_cancellation() -> None:
    result = run(
        workflow(probe("s", sleep=5, timeout=0.05, swallow_cancel=True)), registry(Recorder())
    )
    assert result.step("s").state is StepState.TIMED_OUT


def test_retry_with_backoff() -> None:
    rec = Recorder()
    events: list[Any] = []
    policy = RetryPolicy(max_attempts=4, interval=0.02, backoff=2.0, max_interval=0.05)
    result = run(
        workflow(probe("flaky", fail_attempts=3, retry=policy)), registry(rec), events=events
    )
    assert result.ok
    assert result.step("flaky").attempts == 4
    assert result.step("flaky").outputs == {"attempt": 4}
    starts = rec.attempts["flaky"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.05
    assert gaps[2] < 0.5
    assert [e.delay for e in events if isinstance(e, StepRetrying)] == [0.02, 0.04, 0.05]


def test_retry_exhausted_fails() -> None:
    result = run(
        workflow(probe("f", fail=True, retry=RetryPolicy(max_attempts=2))), registry(Recorder())
    )
    assert result.step("f").state is StepState.FAILED and result.step("f").attempts == 2


def test_continue_on_error_keeps_going() -> None:
    result = run(
        workflow(probe("a", fail=True, continue_on_error=True), probe("b")), registry(Recorder())
    )
    assert result.ok
    assert states(result) == {"a": "failed", "b": "succeeded"}


def test_on_failure_sees_failure_outputs() -> None:
    rec = Recorder()
    wf = workflow(
        probe("a", fail=True, outputs={"code": 3}, on_failure=probe("notify")),
        probe("b", on_failure=probe("never")),
    )
    result = run(wf, registry(rec))
    assert result.status is RunStatus.FAILED
    assert states(result) == {
        "a": "failed",
        "notify": "succeeded",
        "b": "not_run",
        "never": "not_run",
    }
    assert rec.contexts["notify"].outputs["a"] == {"why": "asked", "code": 3}
    ok = run(workflow(probe("b", on_failure=probe("never"))), registry(Recorder()))
    assert ok.step("never").state is StepState.SKIPPED


def test_ensure_runs_on_success_failure_and_timeout() -> None:
    rec = Recorder()
    wf = workflow(
        probe("a", ensure=probe("a-ensure")),
        probe("b", fail=True, continue_on_error=True, ensure=probe("b-ensure")),
        probe("c", sleep=5, timeout=0.05, ensure=probe("c-ensure")),
    )
    result = run(wf, registry(rec))
    assert states(result) == {
        "a": "succeeded",
        "a-ensure": "succeeded",
        "b": "failed",
        "b-ensure": "succeeded",
        "c": "timed_out",
        "c-ensure": "succeeded",
    }
    assert rec.order() == ["a", "a-ensure", "b", "b-ensure", "c", "c-ensure"]


def test_failing_ensure_fails_the_run() -> None:
    result = run(
        workflow(probe("a", ensure=probe("e", fail=True)), probe("b")), registry(Recorder())
    )
    assert result.status is RunStatus.FAILED
    assert states(result) == {"a": "succeeded", "e": "failed", "b": "not_run"}


def test_cancel_runs_ensure_and_reports_cancelled(tmp_path: Path) -> None:
    rec = Recorder()
    wf = workflow(
        block(
            "par", probe("x", sleep=5, ensure=probe("x-ensure", sleep=0.05)), probe("y", sleep=5)
        ),
        probe("later"),
    )

    async def main() -> RunResult:
        runner = Run(wf, registry(rec), options=RunOptions(workspace_root=tmp_path))
        task = asyncio.create_task(runner.execute())
        await asyncio.sleep(0.05)
        runner.cancel()
        return await task

    result = asyncio.run(main())
    assert result.status is RunStatus.CANCELLED
    assert states(result) == {
        "par": "cancelled",
        "x": "cancelled",
        "x-ensure": "succeeded",
        "y": "cancelled",
        "later": "not_run",
    }
    assert list(tmp_path.iterdir()) == []  # workspace removed


def test_workspace_is_shared_and_removed_unless_kept(tmp_path: Path) -> None:
    rec = Recorder()
    result = run(
        workflow(probe("a")),
        registry(rec),
        options=RunOptions(workspace_root=tmp_path, run_id="r1"),
    )
    ws = rec.contexts["a"].workspace
    assert ws.parent == tmp_path and ws.name.startswith("wfe-run-r1-")
    assert not ws.exists() and result.workspace is None
    kept = run(
        workflow(probe("a")),
        registry(rec),
        options=RunOptions(workspace_root=tmp_path, keep_workspace=True),
    )
    assert kept.workspace is not None and kept.workspace.is_dir()


def test_unknown_type_fails_cleanly() -> None:
    step = Step("u", LOC, type="nope")
    result = run(workflow(step), registry(Recorder()))
    assert result.step("u").state is StepState.FAILED
    assert result.step("u").error == "unknown step type 'nope'"


def test_events_for_display() -> None:
    events: list[Any] = []
    run(workflow(probe("a")), registry(Recorder()), events=events)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["RunStarted", "StepStarted", "StepLog", "StepFinished", "RunFinished"]


def test_json_shape() -> None:
    result = run(workflow(probe("a", outputs={"k": "v"})), registry(Recorder()))
    data = json.loads(json.dumps(run_result_to_json(result)))
    assert data["status"] == "succeeded"
    assert data["steps"]["a"]["outputs"] == {"k": "v", "attempt": 1}
    assert set(data["steps"]["a"]) >= {"state", "attempts", "started_at", "duration", "error"}


def test_prepare_inputs() -> None:
    wf = workflow(
        inputs=[
            InputSpec("tag", default="dev"),
            InputSpec("n", type="integer", required=True),
            InputSpec("flag", type="boolean", default=False),
            InputSpec("ratio", type="number", default=0.5),
        ]
    )
    assert prepare_inputs(wf, {"n": "3", "flag": "yes"}) == {
        "n": 3,
        "flag": True,
        "tag": "dev",
        "ratio": 0.5,
    }
    with pytest.raises(InputError) as err:
        prepare_inputs(wf, {"tga": "x", "flag": "maybe"})
    problems = err.value.problems
    assert any("did you mean 'tag'" in p for p in problems)
    assert any("missing required input 'n'" in p for p in problems)
    assert any("boolean" in p for p in problems)


def test_noop_throughput_sanity() -> None:
    steps = [Step(f"s{i}", LOC, type="noop", config=NoopConfig()) for i in range(500)]
    t0 = time.perf_counter()
    result = run(workflow(*steps), registry(Recorder()))
    assert result.ok and time.perf_counter() - t0 < 2


@attrs.frozen
class SleepyConfig:
    seconds: float = 1.0


class SleepyBody(StepBody):
    def __init__(self, config: SleepyConfig) -> None:
        self.config = config

    def run(self, ctx: StepContext) -> ExecutionResult:
        time.sleep(self.config.seconds)
        return ExecutionResult()


def test_sync_body_timeout_moves_on() -> None:
    """A sync body cannot be interrupted: the step times out and the run moves on anyway."""
    plugin = ExecutorPlugin("sleepy", SleepyConfig, SleepyBody)
    step = Step("z", LOC, type="sleepy", config=SleepyConfig(0.5), timeout=0.05)
    t0 = time.monotonic()
    events: list[Any] = []
    reg = registry(Recorder(), plugin)
    result = asyncio.run(run_workflow(workflow(step, probe("after")), reg, on_event=events.append))
    assert result.step("z").state is StepState.TIMED_OUT
    assert result.step("after").state is StepState.NOT_RUN
    assert time.monotonic() - t0 < 2


def test_a_failing_display_does_not_change_the_run() -> None:
    def broken(event: Any) -> None:
        raise BrokenPipeError("reader went away")

    reg = registry(Recorder())
    runner = Run(workflow(probe("a"), probe("b")), reg, on_event=broken)
    result = asyncio.run(runner.execute())
    assert result.ok and states(result) == {"a": "succeeded", "b": "succeeded"}
    assert isinstance(runner.display_error, BrokenPipeError)
