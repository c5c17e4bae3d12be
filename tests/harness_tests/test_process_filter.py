"""Harness daemons are children of the test process; "no leftover children" checks skip them."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.harness import ContainerdDaemon, is_harness_process, non_harness_children
from tests.harness.processes import descendants

pytestmark = pytest.mark.daemon


def test_harness_daemons_are_not_counted_as_leftover_children(
    containerd_daemon: ContainerdDaemon,
) -> None:
    """Other tests check "no children left"; the session's daemons must not count."""
    assert containerd_daemon.pid is not None
    ours = [p for p in descendants(os.getpid()) if p.pid == containerd_daemon.pid]
    if ours:  # started by this session (not reused from WFE_HARNESS)
        assert is_harness_process(ours[0])
    child = subprocess.Popen(["sleep", "5"])
    try:
        assert [p.pid for p in non_harness_children()] == [child.pid]
    finally:
        child.kill()
        child.wait()
    assert non_harness_children() == []
