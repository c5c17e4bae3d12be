"""Turning ``-i KEY=VALUE`` strings into typed workflow inputs, per the workflow's InputSpecs.

Command-line values are strings; an input declared ``number``, ``integer`` or ``boolean`` is
converted (``true/false/yes/no/1/0`` for booleans), defaults fill what was not given, and every
problem (unknown name, missing required input, unconvertible value) is collected into one
:class:`InputError` so that the CLI can report all of them and exit with 2.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping

from wfe_core.contracts import JSONValue
from wfe_core.model import InputSpec, Workflow


class InputError(Exception):
    """The given inputs do not fit the workflow; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def convert_input(spec: InputSpec, value: JSONValue) -> JSONValue:
    """Convert one value to ``spec.type``; raises ValueError with a readable message."""
    kind = spec.type
    if not isinstance(value, str):
        return value
    if kind == "string":
        return value
    if kind == "boolean":
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"input {spec.name!r} is a boolean; got {value!r} (use true or false)")
    if kind == "integer":
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"input {spec.name!r} is an integer; got {value!r}") from None
    if kind == "number":
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"input {spec.name!r} is a number; got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"input {spec.name!r} must be a finite number; got {value!r}")
        return int(number) if number.is_integer() and "." not in value else number
    return value


def prepare_inputs(workflow: Workflow, given: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    """The run's inputs: given values converted, defaults filled in; raises InputError."""
    specs = {spec.name: spec for spec in workflow.inputs}
    problems: list[str] = []
    result: dict[str, JSONValue] = {}
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(specs), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            declared = ", ".join(sorted(specs)) or "none"
            problems.append(
                f"unknown input {name!r}{hint}; workflow {workflow.id!r} declares: {declared}"
            )
            continue
        try:
            result[name] = convert_input(spec, value)
        except ValueError as exc:
            problems.append(str(exc))
    for spec in workflow.inputs:
        if spec.name in result or spec.name in given:
            continue
        if spec.required:
            problems.append(
                f"missing required input {spec.name!r} ({spec.type}); pass -i {spec.name}=VALUE"
            )
        else:
            result[spec.name] = spec.default
    if problems:
        raise InputError(problems)
    return result


__all__ = ["InputError", "convert_input", "prepare_inputs"]
