"""Fixed names and places of the harness (shared by setup, teardown and the sweep)."""

from __future__ import annotations

from pathlib import Path

#: Every harness directory is ``$TMPDIR/wfe-h-XXXXXXXX``; processes naming it are the harness's.
DIR_PREFIX = "wfe-h-"
#: The state file in a harness directory (``$WFE_HARNESS`` points at it).
STATE_FILE = "harness.json"
#: Where containerd 1.6 shims put their sockets, whatever the daemon's own state dir is.
SHIM_SOCKET_DIR = Path("/run/containerd/s")
