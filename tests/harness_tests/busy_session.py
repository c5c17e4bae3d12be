"""A test session run *inside* the leak tests (not collected by the outer session).

It starts every daemon through the normal fixtures, leaves containers running on both engines,
writes the harness footprint to ``$WFE_LEAK_REPORT`` and, with ``WFE_LEAK_HANG=1``, then waits to
be interrupted (Ctrl-C) so the outer test can check teardown on interrupt.
"""

from __future__ import annotations

import json
import os
import time

from tests.harness import ContainerdDaemon, DockerDaemon, Harness, TestImages
from tests.harness_tests.occupy import containerd_sleeper, docker_sleeper, footprint


def test_leave_things_running(
    harness: Harness,
    containerd_daemon: ContainerdDaemon,
    docker_daemon: DockerDaemon,
    test_images: TestImages,
) -> None:
    ref = test_images.ref("busybox")
    containerd_sleeper(containerd_daemon.address, containerd_daemon.state, ref)
    docker_sleeper(docker_daemon.socket, ref)
    pids = [int(i["pid"]) for i in harness.state["services"].values()]
    report = footprint(str(harness.base), pids)
    tmp = os.environ["WFE_LEAK_REPORT"] + ".tmp"
    with open(tmp, "w") as out:
        json.dump(report, out)
    os.replace(tmp, os.environ["WFE_LEAK_REPORT"])
    if os.environ.get("WFE_LEAK_HANG") == "1":
        time.sleep(120)
