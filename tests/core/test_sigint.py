"""Ctrl-C cleanup, end to end: SIGINT to a running ``wfe run`` in a subprocess.

The long shell step starts a background process too; after SIGINT the ensure step must have
run, the exit code must be 130, and neither processes nor workspace directories may remain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

WORKFLOW = """\
    workflow:
      id: interrupt-me
      version: 1
      steps:
        - name: prepare
          type: shell
          config: {{run: "echo ready"}}
        - name: long
          type: shell
          config:
            run: |
              sleep 120 &
              echo $! > {pids}
              echo $$ >> {pids}
              wait
          ensure:
            name: cleanup
            type: shell
            config:
              run: sleep 0.3; echo cleaned > {marker}
        - name: never
          type: shell
          config: {{run: "echo should not run > {never}"}}
    """


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], Path, Path, Path, Path]:
    pids, marker, never = tmp_path / "pids", tmp_path / "marker", tmp_path / "never"
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(textwrap.dedent(WORKFLOW).format(pids=pids, marker=marker, never=never))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    env.pop("TERM", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from wfe_core.cli import main; main()",
            "run",
            str(workflow),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while not (pids.exists() and pids.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the long step never started"
        time.sleep(0.05)
    return proc, pids, marker, never, tmpdir


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_sigint_runs_ensure_and_leaves_nothing(tmp_path: Path) -> None:
    proc, pids, marker, never, tmpdir = _start(tmp_path)
    step_pids = [int(p) for p in pids.read_text().split()]
    assert all(_alive(p) for p in step_pids)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, (stdout, stderr)
    assert marker.read_text() == "cleaned\n"
    assert not never.exists()
    assert not [p for p in step_pids if _alive(p)]
    assert list(tmpdir.iterdir()) == []
    assert "interrupted" in stdout and "cleanup: succeeded" in stdout
    assert "run interrupted after" in stdout.splitlines()[-1]
    assert "Traceback" not in stderr


def test_sigint_with_json_reports_cancelled(tmp_path: Path) -> None:
    proc, _pids, marker, _never, tmpdir = _start(tmp_path, "--json")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    data = json.loads(stdout)
    assert data["status"] == "cancelled"
    assert data["steps"]["long"]["state"] == "cancelled"
    assert data["steps"]["cleanup"]["state"] == "succeeded"
    assert data["steps"]["never"]["state"] == "not_run"
    assert marker.exists() and list(tmpdir.iterdir()) == []


def test_second_sigint_forces_exit(tmp_path: Path) -> None:
    proc, pids, _marker, _never, tmpdir = _start(tmp_path)
    step_pids = [int(p) for p in pids.read_text().split()]
    # Make the ensure step slow to finish, so that the second Ctrl-C lands while it runs.
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "forced exit" in stderr
    deadline = time.monotonic() + 5
    while [p for p in step_pids if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in step_pids if _alive(p)]
    assert list(tmpdir.iterdir()) == []
