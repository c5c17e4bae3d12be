"""The workflow runner: runs a compiled workflow on asyncio and reports what happened.

``Run(workflow, registry, inputs=..., options=RunOptions(jobs=4), on_event=callback)`` then
``await run.execute()`` gives a :class:`RunResult`; ``run.cancel()`` interrupts it (Ctrl-C).
See :mod:`wfe_core.runner.engine` for the scheduling rules, :mod:`.conditions` for ``when``,
:mod:`.events` for what displays receive, :mod:`.inputs` for typing the CLI's ``-i`` values.
"""

from wfe_core.runner.conditions import ConditionError, evaluate
from wfe_core.runner.engine import Run, RunOptions, default_jobs, iter_steps, run_workflow
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
from wfe_core.runner.inputs import InputError, prepare_inputs
from wfe_core.runner.results import (
    RunResult,
    RunStatus,
    StepResult,
    StepState,
    run_result_to_json,
)

__all__ = [
    "ConditionError",
    "EventCallback",
    "InputError",
    "Run",
    "RunEvent",
    "RunFinished",
    "RunOptions",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "StepFinished",
    "StepLog",
    "StepProgress",
    "StepResult",
    "StepRetrying",
    "StepStarted",
    "StepState",
    "default_jobs",
    "evaluate",
    "iter_steps",
    "prepare_inputs",
    "run_result_to_json",
    "run_workflow",
]
