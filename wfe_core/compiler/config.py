"""Structuring a step's ``config:`` mapping into its executor's attrs class with cattrs.

The default converter is deliberately stricter than cattrs' own defaults, which call the target
type on whatever they get (``bool("false")`` is True, ``str([1])`` is ``"[1]"``, a string
structures into a tuple of characters). Here a string field takes a string (or an integer,
written out), an int field an integer (or a string of digits), a bool field a boolean (or the
strings ``"true"``/``"false"``), and a list field a list. Accepting the string forms matters
because interpolation always produces strings.

Failures are turned into :class:`ConfigProblem` values carrying the config path they concern,
so the compiler can point at the offending key's line and the runner can say which key was
wrong after interpolation.
"""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory, is_sequence, list_structure_factory
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from wfe_core.compiler.nodes import kind_of_value
from wfe_core.compiler.suggest import did_you_mean, one_of
from wfe_core.contracts import ConfigPath, ExecutorPlugin

_INT_TEXT = re.compile(r"\s*[-+]?[0-9]+\s*\Z")


class ConfigValueError(ValueError):
    """A value of the wrong kind; the message is complete and meant for the user."""


class ConfigShapeError(ConfigValueError):
    """A scalar where a list or mapping is needed (text from a reference can never fit)."""


@attrs.frozen
class ConfigProblem:
    """One thing wrong with a config: where (a config path), what, and maybe a hint.

    ``kind`` is ``"unknown"`` (a key the class does not have), ``"missing"`` (a required key
    absent), ``"shape"`` (a scalar where a list or mapping is needed) or ``"invalid"`` (any
    other value that does not fit).
    """

    path: ConfigPath
    message: str
    kind: str = "invalid"
    hint: str | None = None


class ConfigError(Exception):
    """The config did not structure. ``messages`` pairs each config path with its problem."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        self.messages: list[tuple[ConfigPath, str]] = [
            (p.path, p.message + (f" ({p.hint})" if p.hint else "")) for p in problems
        ]
        super().__init__(
            "; ".join((f"{format_path(p)}: " if p else "") + m for p, m in self.messages)
        )


def format_path(path: ConfigPath) -> str:
    """``mounts[0].source`` for ``("mounts", 0, "source")``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _structure_str(value: Any, _type: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    hint = " (quote it to make it a string)" if isinstance(value, bool | float) else ""
    raise ConfigValueError(f"expected a string, got {kind_of_value(value)}{hint}")


def _structure_int(value: Any, _type: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.match(value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ConfigValueError(f"expected an integer, got {kind_of_value(value)}")


def _structure_float(value: Any, _type: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigValueError(f"expected a number, got {kind_of_value(value)}")


def _structure_bool(value: Any, _type: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigValueError(f"expected true or false, got {kind_of_value(value)}")


def _is_homogeneous_sequence(type_: Any) -> bool:
    origin = get_origin(type_)
    if origin is tuple:
        args = get_args(type_)
        return len(args) == 2 and args[1] is Ellipsis
    return bool(is_sequence(type_)) and origin not in (set, frozenset)


def _strict_sequences(converter: cattrs.Converter) -> None:
    def factory(type_: Any) -> Callable[[Any, Any], Any]:
        inner = (
            homogenous_tuple_structure_factory(type_, converter)
            if get_origin(type_) is tuple
            else list_structure_factory(type_, converter)
        )

        def hook(value: Any, target: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise ConfigShapeError(f"expected a list, got {kind_of_value(value)}")
            return inner(value, target)

        return hook

    converter.register_structure_hook_factory(_is_homogeneous_sequence, factory)


def default_converter() -> cattrs.Converter:
    """The converter used for plugins that bring none: strict scalars, no unknown keys."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    _strict_sequences(converter)
    return converter


_DEFAULT = default_converter()


def describe_type(type_: Any) -> str:
    """An English name for a config field type, for "expected ..." messages."""
    if type_ is None:
        return "a value"
    origin = get_origin(type_)
    args = get_args(type_)
    simple = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if type_ in simple:
        return simple[type_]
    if origin is typing.Literal:
        return "one of " + one_of(str(a) for a in args)
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        return "one of " + one_of(str(m.value) for m in type_)
    if origin in (list, tuple, set, frozenset) or is_sequence(type_):
        return "a list"
    if origin in (dict, Mapping) or (origin is not None and "Mapping" in str(origin)):
        return "a mapping"
    if attrs.has(type_):
        return "a mapping"
    name = getattr(type_, "__name__", None)
    return name or str(type_)


def _leaf(exc: BaseException, path: ConfigPath, type_: Any, value: Any) -> list[ConfigProblem]:
    if isinstance(exc, ForbiddenExtraKeysError):
        fields = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return [
            ConfigProblem(
                (*path, key), f"unknown key {key!r}", "unknown", did_you_mean(key, fields)
            )
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, KeyError):
        name = path[-1] if path else "?"
        return [ConfigProblem(path, f"missing required key {name!r}", "missing")]
    if isinstance(exc, ConfigShapeError):
        return [ConfigProblem(path, str(exc), "shape")]
    if isinstance(exc, ConfigValueError):
        return [ConfigProblem(path, str(exc))]
    if isinstance(exc, AttributeError) and ("items" in str(exc) or "keys" in str(exc)):
        return [ConfigProblem(path, f"expected a mapping, got {kind_of_value(value)}", "shape")]
    if (
        isinstance(exc, ValueError | TypeError | cattrs.errors.BaseValidationError)
        or type(exc).__name__ == "CattrsError"
    ):
        got = "" if value is _ABSENT else f", got {kind_of_value(value)}"
        return [ConfigProblem(path, f"expected {describe_type(type_)}{got}")]
    return [ConfigProblem(path, f"{type(exc).__name__}: {exc}")]


_ABSENT: Any = object()


def _child(value: Any, key: str | int) -> Any:
    """The value at ``key`` of a mapping or list (for "got ..." in messages), else absent."""
    if isinstance(value, Mapping):
        return value.get(key, _ABSENT)
    if isinstance(key, int) and isinstance(value, list | tuple) and 0 <= key < len(value):
        return value[key]
    return _ABSENT


def problems_of(exc: BaseException, data: Any, path: ConfigPath = ()) -> list[ConfigProblem]:
    """Flatten a (detailed-validation) cattrs exception into problems with config paths."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        found: list[ConfigProblem] = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            key: str | int = note.name if hasattr(note, "name") else note.index
            sub_path: ConfigPath = (*path, key)
            sub_value = _child(data, key)
            if isinstance(sub, ClassValidationError | IterableValidationError):
                found.extend(problems_of(sub, sub_value, sub_path))
            else:
                found.extend(_leaf(sub, sub_path, note.type, sub_value))
        for sub in without:
            found.extend(_leaf(sub, path, None, data))
        return found
    return _leaf(exc, path, None, data)


def structure_config(plugin: ExecutorPlugin, data: Mapping[str, Any]) -> Any:
    """``data`` structured into ``plugin.config_type``; raises :class:`ConfigError` if it does
    not fit (every problem found, each with its config path)."""
    converter = plugin.converter or _DEFAULT
    if not isinstance(data, Mapping):
        raise ConfigError([ConfigProblem((), f"expected a mapping, got {kind_of_value(data)}")])
    try:
        return converter.structure(dict(data), plugin.config_type)
    except Exception as exc:
        if isinstance(exc, cattrs.errors.StructureHandlerNotFoundError):
            raise ConfigError(
                [
                    ConfigProblem(
                        (), f"executor {plugin.name!r} has an unsupported config type: {exc}"
                    )
                ]
            ) from None
        problems = problems_of(exc, data)
        raise ConfigError(problems or [ConfigProblem((), str(exc))]) from None


__all__ = [
    "ConfigError",
    "ConfigProblem",
    "ConfigShapeError",
    "ConfigValueError",
    "default_converter",
    "describe_type",
    "format_path",
    "problems_of",
    "structure_config",
]
