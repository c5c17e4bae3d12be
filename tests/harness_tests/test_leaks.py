"""After the harness stops, none of its processes, mounts, sockets or directories remain.

Each case runs the harness in a subprocess with containers left running on both engines (the
hard case for teardown): ``up`` then ``down``; a normal pytest session; a pytest session
interrupted with Ctrl-C (SIGINT) in the middle of a test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import require
from tests.harness.leaks import leftovers
from tests.harness.report import note
from tests.harness.teardown import sweep_stale
from tests.harness_tests.occupy import containerd_sleeper, docker_sleeper, footprint

pytestmark = pytest.mark.daemon
ROOT = Path(__file__).resolve().parents[2]
BUSY_SESSION = Path(__file__).with_name("busy_session.py")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WFE_HARNESS"}
    env.update(extra)
    return env


def _assert_clean(report: dict[str, Any]) -> None:
    left = leftovers(
        Path(report["base"]),
        pids=report["pids"],
        sockets=[Path(s) for s in report["sockets"]],
        cgroups=[Path(c) for c in report["cgroups"]],
    )
    assert not left, f"harness leftovers: {left}"


@pytest.fixture(autouse=True)
def _needs_everything() -> None:
    require("containerd", "dockerd", "registry", "auth_registry", "images")


def test_up_then_down_leaves_nothing() -> None:
    up = subprocess.run(
        [sys.executable, "-m", "tests.harness", "up"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    match = re.search(r"^export WFE_HARNESS=(\S+)$", up.stdout, re.M)
    assert match, up.stdout
    state_path = match.group(1).strip("'")
    state = json.loads(Path(state_path).read_text())
    timing = re.search(r"daemons ready in .*", up.stderr)
    note(f"harness up (subprocess): {timing.group(0) if timing else up.stderr.strip()}")
    try:
        services = state["services"]
        ref = state["images"]["busybox"]["refs"]["plain"]
        containerd_sleeper(services["containerd"]["address"], services["containerd"]["state"], ref)
        docker_sleeper(services["docker"]["socket"], ref)
        report = footprint(state["base"], [int(s["pid"]) for s in services.values()])
        assert len(report["sockets"]) >= 2, report  # one shim per engine
        assert report["cgroups"], report  # the containers' cgroups, gone after down
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "tests.harness", "down", "--state", state_path],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    note(f"harness down (subprocess): {down.stderr.strip()}")
    _assert_clean(report)


def _busy_pytest(tmp_path: Path, *, interrupt: bool) -> tuple[subprocess.Popen[str], Path]:
    report_path = tmp_path / "footprint.json"
    argv = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "180",
        str(BUSY_SESSION),
    ]  # fmt: skip
    env = _env(WFE_LEAK_REPORT=str(report_path), WFE_LEAK_HANG="1" if interrupt else "0")
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return proc, report_path


def test_pytest_session_leaves_nothing(tmp_path: Path) -> None:
    proc, report_path = _busy_pytest(tmp_path, interrupt=False)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    _assert_clean(json.loads(report_path.read_text()))


def test_interrupted_session_leaves_nothing(tmp_path: Path) -> None:
    proc, report_path = _busy_pytest(tmp_path, interrupt=True)
    try:
        deadline = time.monotonic() + 120
        while not report_path.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "busy session never got ready"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, out  # interrupted
    _assert_clean(json.loads(report_path.read_text()))


def test_killed_session_is_swept_by_the_next(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up; the next harness sweeps what remains."""
    proc, report_path = _busy_pytest(tmp_path, interrupt=True)
    try:
        deadline = time.monotonic() + 120
        while not report_path.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "busy session never got ready"
            time.sleep(0.1)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = json.loads(report_path.read_text())
    # (A harness created concurrently by another session may have swept it already.)
    sweep_stale()
    _assert_clean(report)
