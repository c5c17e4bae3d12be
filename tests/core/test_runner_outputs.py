"""What later steps see of a step that ran but returned no outputs."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from wfe_core.contracts import ExecutionResult, ExecutorPlugin, StepBody, StepContext
from wfe_core.model import Location, Step, Workflow
from wfe_core.plugins import PluginRegistry
from wfe_core.runner import StepState, run_workflow

LOC = Location("test.yaml", 1, 1)


@attrs.frozen
class _Config:
    text: str = ""


class _Body(StepBody):
    def __init__(self, config: _Config) -> None:
        self.config = config

    async def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult()  # no outputs at all


PLUGIN = ExecutorPlugin("quiet", _Config, _Body)


def _step(name: str, **config: Any) -> Step:
    structured = None if any("${{" in str(v) for v in config.values()) else _Config(**config)
    return Step(name=name, location=LOC, type="quiet", config=structured, raw_config=config)


def test_a_step_without_outputs_still_counts_as_having_run() -> None:
    workflow = Workflow(
        "wf", LOC, (_step("first"), _step("second", text="${{ steps.first.outputs.nope }}"))
    )
    registry = PluginRegistry([PLUGIN], discover=False)
    result = asyncio.run(run_workflow(workflow, registry))
    second = result.step("second")
    assert result.step("first").state is StepState.SUCCEEDED
    assert second.state is StepState.FAILED
    assert second.error == "config: step 'first' has no output 'nope' (its outputs: none)"
