"""The compiled workflow: what the compiler produces and the runner executes.

Plain frozen values, no behaviour: the compiler (``wfe_core.compiler``) builds them from YAML
after every check has passed, and the runner (``wfe_core.runner``) walks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import attrs

from wfe_core.contracts import JSONValue


@attrs.frozen
class Location:
    """Where something was written: 1-based line and column in ``file``."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@attrs.frozen
class InputSpec:
    """A declared workflow input (``inputs: {tag: {type: string, default: dev}}``)."""

    name: str
    type: str = "string"  # string | number | integer | boolean
    default: JSONValue = None
    required: bool = False
    description: str = ""


@attrs.frozen
class RetryPolicy:
    """``retry: {max_attempts, interval, backoff, max_interval}``; durations in seconds."""

    max_attempts: int = 1
    interval: float = 0.0
    backoff: float = 1.0
    max_interval: float | None = None

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        value = self.interval * (self.backoff ** (failed_attempt - 1))
        return min(value, self.max_interval) if self.max_interval is not None else value


@attrs.frozen
class Compare:
    """A leaf condition: ``{field: steps.x.outputs.y, equals: 0}``.

    ``op`` is one of equals, not_equals, gt, gte, lt, lte, contains, is_null, is_not_null;
    ``value`` is unused for the null checks.
    """

    field: str
    op: str
    value: JSONValue = None


@attrs.frozen
class Combine:
    """A combinator: ``all``, ``any``, ``none`` or ``one_of`` over several conditions."""

    op: str
    conditions: tuple[Condition, ...]


@attrs.frozen
class Not:
    """``not: CONDITION``."""

    condition: Condition


Condition: TypeAlias = "Compare | Combine | Not"


@attrs.frozen
class Step:
    """One step: either an executor step (``type`` set) or a parallel block (``parallel``).

    ``raw_config`` is the ``config:`` mapping as plain data, still holding ``${{ ... }}``
    references; the runner interpolates it and structures it again when the step starts.
    ``config`` is the structure made at compile time (for inspection and validators).
    ``depends_on`` names the steps whose outputs this step (its config or ``when``) reads:
    if one of them was skipped, this step is skipped too.
    """

    name: str
    location: Location
    type: str | None = None
    config: Any = None
    raw_config: Mapping[str, Any] = attrs.field(factory=dict)
    parallel: tuple[Step, ...] = ()
    when: Condition | None = None
    timeout: float | None = None
    retry: RetryPolicy | None = None
    continue_on_error: bool = False
    on_failure: Step | None = None
    ensure: Step | None = None
    depends_on: frozenset[str] = frozenset()

    @property
    def is_parallel(self) -> bool:
        return self.type is None


@attrs.frozen
class Workflow:
    """A compiled workflow: its id, inputs and top-level steps in order."""

    id: str
    location: Location
    steps: tuple[Step, ...]
    version: int = 1
    inputs: tuple[InputSpec, ...] = ()
    description: str = ""

    @property
    def file(self) -> str:
        return self.location.file


__all__ = [
    "Combine",
    "Compare",
    "Condition",
    "InputSpec",
    "Location",
    "Not",
    "RetryPolicy",
    "Step",
    "Workflow",
]
