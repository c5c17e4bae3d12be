"""The live progress tree on a real terminal, recorded with tmux (send-keys, capture-pane)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

WORKFLOW = """\
    workflow:
      id: live-demo
      version: 1
      steps:
        - name: first
          type: shell
          config: {run: "echo line one; echo line two"}
        - name: checks
          parallel:
            - {name: quick, type: shell, config: {run: "echo quick done"}}
            - name: slow
              type: shell
              config: {run: "sleep 1.5; echo slow done"}
        - name: last
          type: shell
          config: {run: "echo bye"}
    """


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def test_live_tree_in_tmux(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(textwrap.dedent(WORKFLOW))
    done = tmp_path / "exit-code"
    session = f"wfe-test-{uuid.uuid4().hex[:8]}"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", "-e", "TERM=xterm-256color")
    try:
        command = (
            f"{sys.executable} -c 'from wfe_core.cli import main; main()' run {workflow}; "
            f"echo $? > {done}"
        )
        tmux("send-keys", "-t", session, command, "Enter")
        during = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not done.exists():
            screen = tmux("capture-pane", "-p", "-t", session)
            if "slow (shell)" in screen and "✓ quick" in screen:
                during = during or screen
            time.sleep(0.1)
        assert done.exists(), tmux("capture-pane", "-p", "-t", session)
        final = tmux("capture-pane", "-p", "-t", session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert done.read_text().strip() == "0"
    # While running: the tree with a finished child and a still running sibling.
    assert "wfe live-demo" in during
    assert "✓ first (shell)" in during
    assert "checks" in during and "slow (shell)" in during
    # At the end: every step succeeded, output lines prefixed with their step's name.
    for name in ("first", "quick", "slow", "last"):
        assert f"✓ {name} (shell)" in final
    assert "first │ line one" in final and "slow │ slow done" in final
    assert "run succeeded in" in final
    assert final.count("wfe live-demo") == 1  # redrawn in place, not appended
