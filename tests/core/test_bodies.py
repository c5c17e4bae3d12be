"""Building a step's config at run time (after interpolation)."""

from __future__ import annotations

import attrs
import pytest

from wfe_core.contracts import ExecutionResult, ExecutorPlugin, StepBody, StepContext
from wfe_core.model import Location, Step
from wfe_core.runner.bodies import StepSetupError, build_config


@attrs.frozen
class _Mount:
    source: str
    size: int = 0


@attrs.frozen
class _Config:
    mounts: list[_Mount] = attrs.field(factory=list)


class _Body(StepBody):
    def __init__(self, config: _Config) -> None:
        self.config = config

    def run(self, ctx: StepContext) -> ExecutionResult:
        return ExecutionResult()


PLUGIN = ExecutorPlugin(name="mounts", config_type=_Config, create=_Body)


def _step(raw: dict[str, object]) -> Step:
    return Step(name="s", location=Location("wf.yaml", 1, 1), type="mounts", raw_config=raw)


def test_run_time_config_errors_name_the_key_as_the_compiler_does() -> None:
    step = _step({"mounts": [{"source": "/a", "size": "${{ inputs.size }}"}]})
    with pytest.raises(StepSetupError) as failed:
        build_config(PLUGIN, step, inputs={"size": "big"}, outputs={}, env={})
    assert str(failed.value).startswith("config.mounts[0].size: expected an integer")


def test_run_time_config_is_interpolated_then_structured() -> None:
    step = _step({"mounts": [{"source": "${{ inputs.src }}", "size": "${{ inputs.size }}"}]})
    config = build_config(PLUGIN, step, inputs={"src": "/b", "size": 3}, outputs={}, env={})
    assert config == _Config([_Mount("/b", 3)])
