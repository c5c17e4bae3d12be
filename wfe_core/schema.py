"""JSON Schema (draft 2020-12) of the workflow file format, for editors and ``wfe schema``.

The schema of each executor's ``config:`` is derived from its attrs class: field types
(``str``, ``int``, ``float``, ``bool``, ``Literal``, enums, lists, tuples, mappings, optional
values, nested attrs classes), defaults, required fields (those without a default) and
descriptions from field metadata (``doc``, ``description`` or ``help``). A step's ``config`` is
tied to its ``type`` with ``if``/``then``. Fields that are not strings also accept a string
holding a ``${{ ... }}`` reference, because such values are only known at run time.

The schema describes the shape of a file; what it cannot express (references to earlier steps,
executor validators) is checked by ``wfe validate``.
"""

from __future__ import annotations

import enum
import json
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, get_args, get_origin

import attrs

from wfe_core.compiler.conditions import COMBINATORS, LISTS, NULL_CHECKS, OPERATORS, ORDERING
from wfe_core.compiler.step_syntax import NAME_PATTERN
from wfe_core.compiler.workflows import ID_PATTERN, INPUT_NAME, INPUT_TYPES
from wfe_core.contracts import ExecutorPlugin
from wfe_core.plugins import PluginRegistry

DRAFT = "https://json-schema.org/draft/2020-12/schema"
REFERENCE = {"type": "string", "pattern": r"\$\{\{.*\}\}", "description": "a ${{ ... }} reference"}
DURATION = {
    "description": "a duration: 500ms, 30s, 10m, 2h, 1m30s, or a number of seconds",
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^[0-9]+(\.[0-9]+)?$"},
    ],
}
_DOC_KEYS = ("doc", "description", "help")


def _regex(pattern: typing.Pattern[str]) -> str:
    return "^" + pattern.pattern.removesuffix(r"\Z") + "$"


class _Builder:
    """Builds schemas for types, collecting attrs classes into ``defs`` under ``prefix``."""

    def __init__(self, defs: dict[str, Any], prefix: str, ref_base: str) -> None:
        self.defs = defs
        self.prefix = prefix
        self.ref_base = ref_base

    def type_schema(self, tp: Any) -> dict[str, Any]:
        if tp is Any or tp is object:
            return {}
        if tp is str or tp is pathlib.Path:
            return {"type": "string"}
        if tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"anyOf": [{"type": "boolean"}, REFERENCE]}
        if tp is int:
            return {"anyOf": [{"type": "integer"}, REFERENCE]}
        if tp is float:
            return {"anyOf": [{"type": "number"}, REFERENCE]}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"anyOf": [{"enum": [m.value for m in tp]}, REFERENCE]}
        if attrs.has(tp):
            return {"$ref": self.ref_base + self.class_def(tp)}
        supertype = getattr(tp, "__supertype__", None)
        if supertype is not None:
            # By convention a NewType called Seconds or Duration is structured from duration
            # syntax ("30s", "1m30s") by its executor's converter, as the shell executor does.
            if getattr(tp, "__name__", "") in ("Seconds", "Duration"):
                return DURATION
            return self.type_schema(supertype)
        origin, args = get_origin(tp), get_args(tp)
        if origin is typing.Literal:
            return {"anyOf": [{"enum": list(args)}, REFERENCE]}
        if origin is typing.Union or origin is types.UnionType:
            return {"anyOf": [self.type_schema(a) for a in args]}
        if origin is typing.Annotated:
            return self.type_schema(args[0])
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.type_schema(args[0])}
            return {
                "type": "array",
                "prefixItems": [self.type_schema(a) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        if origin is not None and isinstance(origin, type):
            if issubclass(origin, Mapping):
                value = self.type_schema(args[1]) if len(args) == 2 else {}
                return {"type": "object", "additionalProperties": value}
            if issubclass(origin, Sequence | set | frozenset) and not issubclass(origin, str):
                return {"type": "array", "items": self.type_schema(args[0]) if args else {}}
        if tp in (list, tuple, set, frozenset):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        return {}

    def class_def(self, cls: type[Any]) -> str:
        """The ``$defs`` name of an attrs class, building its schema on first use."""
        name = self.prefix + cls.__name__
        if name in self.defs:
            return name
        self.defs[name] = {}  # placeholder: recursive classes refer to it
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception:
            hints = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            if not field.init:
                continue
            tp = hints.get(field.name, field.type if not isinstance(field.type, str) else Any)
            schema = dict(self.type_schema(tp))
            for key in _DOC_KEYS:
                if isinstance(field.metadata.get(key), str):
                    schema["description"] = field.metadata[key]
                    break
            if field.default is attrs.NOTHING:
                required.append(field.name)
            else:
                default = _default(field.default)
                if default is not _NO_DEFAULT:
                    schema["default"] = default
            properties[field.name] = schema
        schema_def: dict[str, Any] = {
            "title": cls.__name__,
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        if doc and not doc.startswith(cls.__name__ + "("):  # attrs' generated docstring
            schema_def["description"] = " ".join(doc.split())
        if required:
            schema_def["required"] = required
        self.defs[name] = schema_def
        return name


_NO_DEFAULT: Any = object()


def _default(value: Any) -> Any:
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        if value.takes_self:
            return _NO_DEFAULT
        try:
            value = value.factory()
        except Exception:
            return _NO_DEFAULT
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple | frozenset | set):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return _NO_DEFAULT
    return value


def executor_schema(plugin: ExecutorPlugin) -> dict[str, Any]:
    """A standalone JSON Schema of ``plugin``'s ``config:`` mapping."""
    defs: dict[str, Any] = {}
    builder = _Builder(defs, "", "#/$defs/")
    root = builder.class_def(plugin.config_type)
    schema: dict[str, Any] = {"$schema": DRAFT, **defs.pop(root)}
    schema["title"] = f"config of a {plugin.name!r} step"
    if plugin.description:
        schema["description"] = plugin.description
    if defs:
        schema["$defs"] = defs
    # the root was moved out of $defs: point self references at the document root
    return json.loads(json.dumps(schema).replace(f'"#/$defs/{root}"', '"#"'))  # type: ignore[no-any-return]


def _condition_defs() -> dict[str, Any]:
    field = {"type": "string", "description": "inputs.NAME, steps.STEP.outputs.KEY or env.NAME"}
    operators: dict[str, Any] = {}
    for op in OPERATORS:
        if op in ORDERING:
            operators[op] = {"type": "number"}
        elif op in NULL_CHECKS:
            operators[op] = {"const": True}
        else:
            operators[op] = {}
    leaf = {
        "type": "object",
        "properties": {"field": field, **operators},
        "required": ["field"],
        "minProperties": 2,
        "maxProperties": 2,
        "additionalProperties": False,
    }
    choices: list[Any] = [{"$ref": "#/$defs/condition_leaf"}]
    for name in COMBINATORS:
        value: Any = (
            {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}}
            if name in LISTS
            else {"$ref": "#/$defs/condition"}
        )
        choices.append(
            {
                "type": "object",
                "properties": {name: value},
                "required": [name],
                "additionalProperties": False,
            }
        )
    return {"condition_leaf": leaf, "condition": {"oneOf": choices}}


def _step_defs(plugins: Mapping[str, ExecutorPlugin], defs: dict[str, Any]) -> dict[str, Any]:
    type_schema: dict[str, Any] = {"type": "string", "description": "the executor type"}
    if plugins:
        type_schema["enum"] = sorted(plugins)
    dispatch: list[Any] = []
    for name, plugin in sorted(plugins.items()):
        builder = _Builder(defs, f"config.{name}.", "#/$defs/")
        ref = builder.class_def(plugin.config_type)
        dispatch.append(
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {"properties": {"config": {"$ref": f"#/$defs/{ref}"}}},
            }
        )
    body: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": _regex(NAME_PATTERN)},
            "type": type_schema,
            "config": {"type": "object"},
            "parallel": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
            "when": {"$ref": "#/$defs/condition"},
            "timeout": {"$ref": "#/$defs/duration"},
            "retry": {"$ref": "#/$defs/retry"},
            "continue_on_error": {"type": "boolean"},
            "on_failure": {"$ref": "#/$defs/hook"},
            "ensure": {"$ref": "#/$defs/hook"},
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["type"]}, {"required": ["parallel"]}],
        "dependentRequired": {"config": ["type"]},
    }
    if dispatch:
        body["allOf"] = dispatch
    return {
        "step_body": body,
        "step": {"$ref": "#/$defs/step_body", "required": ["name"]},
        "hook": {
            "$ref": "#/$defs/step_body",
            "description": "a step run when its step fails (on_failure) or always after it "
            "(ensure); its name defaults to STEP-on_failure / STEP-ensure",
        },
        "retry": {
            "type": "object",
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1},
                "interval": {"$ref": "#/$defs/duration"},
                "backoff": {"type": "number", "minimum": 1, "maximum": 1000},
                "max_interval": {"$ref": "#/$defs/duration"},
            },
            "additionalProperties": False,
        },
        "duration": DURATION,
    }


def _workflow_defs() -> dict[str, Any]:
    input_spec = {
        "anyOf": [
            {"enum": list(INPUT_TYPES)},
            {"type": "null"},
            {
                "type": "object",
                "properties": {
                    "type": {"enum": list(INPUT_TYPES)},
                    "default": {},
                    "required": {"type": "boolean"},
                    "description": {"type": "string"},
                },
                "additionalProperties": False,
            },
        ]
    }
    return {
        "input": input_spec,
        "workflow": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": _regex(ID_PATTERN)},
                "version": {"const": 1},
                "description": {"type": "string"},
                "inputs": {
                    "type": "object",
                    "propertyNames": {"pattern": _regex(INPUT_NAME)},
                    "additionalProperties": {"$ref": "#/$defs/input"},
                },
                "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
            },
            "required": ["id", "steps"],
            "additionalProperties": False,
        },
    }


def workflow_schema(registry: PluginRegistry) -> dict[str, Any]:
    """The JSON Schema of a workflow file, with every loadable executor's config."""
    plugins = registry.load_all()
    defs: dict[str, Any] = {}
    defs.update(_workflow_defs())
    defs.update(_step_defs(plugins, defs))
    defs.update(_condition_defs())
    return {
        "$schema": DRAFT,
        "title": "wfe workflow file (format version 1)",
        "type": "object",
        "properties": {
            "workflow": {"$ref": "#/$defs/workflow"},
            "workflows": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/workflow"}},
        },
        "patternProperties": {"^x-": {"description": "ignored; a place for YAML anchors"}},
        "additionalProperties": False,
        "oneOf": [{"required": ["workflow"]}, {"required": ["workflows"]}],
        "$defs": dict(sorted(defs.items())),
    }


__all__ = ["DRAFT", "executor_schema", "workflow_schema"]
