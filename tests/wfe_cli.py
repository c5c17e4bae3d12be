"""Run the `wfe` CLI in a subprocess with extra distributions on ``PYTHONPATH``.

Tests that install throwaway or example executor packages into a temp dir use this to see them
through entry points exactly as a user's `wfe` would (TERM is dropped: plain output).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_wfe(pythonpath: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    env.pop("TERM", None)
    return subprocess.run(
        [sys.executable, "-c", "from wfe_core.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
