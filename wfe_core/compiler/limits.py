"""Caps that keep hostile workflow files from exhausting memory, time or the stack.

They are documented in docs/workflow-format.md; a real workflow is far below every one of them.
"""

from __future__ import annotations

MAX_FILE_BYTES = 1024 * 1024
"""A workflow file larger than 1 MiB is rejected before parsing."""

MAX_DEPTH = 64
"""Mappings and lists may nest at most this deep (checked while parsing, before any recursion)."""

MAX_NODES = 100_000
"""At most this many YAML nodes, counting every alias as a full copy of what it names
(this is what defeats "billion laughs" alias bombs)."""

MAX_ALIASES = 1_000
"""At most this many ``*alias`` uses in one file."""

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES"]
