"""Run ids and the per-run workspace directory.

Every run gets a fresh directory (under ``$TMPDIR`` unless a root is given) that steps share as
scratch space and the default working directory of ``shell`` steps. It is removed when the run
ends, also when it fails or is interrupted, unless the user asked to keep it.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path

WORKSPACE_PREFIX = "wfe-run-"


def new_run_id() -> str:
    """A sortable, practically unique run id: UTC time plus 6 random hex digits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def create_workspace(run_id: str, root: Path | None = None) -> Path:
    """Make the run's workspace directory (private to the user: mode 0700)."""
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{WORKSPACE_PREFIX}{run_id}-", dir=root))


def remove_workspace(path: Path) -> None:
    """Delete the workspace; a file a step made read-only must not make the run fail."""
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["WORKSPACE_PREFIX", "create_workspace", "new_run_id", "remove_workspace"]
