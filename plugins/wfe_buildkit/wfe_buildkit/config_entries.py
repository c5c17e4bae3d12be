"""Helpers shared by the modules that parse the step's list options (secrets, ssh, registry_auth).

Each option accepts its entries either as plain mappings (library use, YAML read by hand) or as
the attrs objects that cattrs builds from the workflow file, and resolves the files an entry
names against the workflow's directory. Doing both in one place keeps the three parsers
agreeing on what an entry is and where a relative path points.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs


def entry_fields(item: Any) -> dict[str, Any] | None:
    """An entry's keys and values: a mapping as it is, an attrs object by its set fields.

    Unset (``None``) attributes are left out, so an attrs entry reads like the mapping the user
    wrote. Anything else gives ``None``, which the callers report as a malformed entry.
    """
    if isinstance(item, Mapping):
        return dict(item)
    if attrs.has(type(item)):
        return {k: v for k, v in attrs.asdict(item, recurse=False).items() if v is not None}
    return None


def resolve_under(path: Path, base_dir: Path | None) -> Path:
    """``path`` with ``~`` expanded; a relative one is taken below ``base_dir`` when given."""
    path = path.expanduser()
    if base_dir is not None and not path.is_absolute():
        return base_dir / path
    return path
