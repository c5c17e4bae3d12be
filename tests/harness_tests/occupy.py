"""Make a harness busy the way a crashed test would: containers running on both engines.

Used by the leak tests: teardown must cope with running shims, container processes and rootfs
mounts, not only with idle daemons.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil  # type: ignore[import-untyped]

from tests.harness import processes
from tests.harness.http_probe import unix_request
from tests.harness.reclaim import cgroups_of
from tests.harness.teardown import shim_sockets


def containerd_sleeper(address: str, state: str, ref: str, name: str = "leak-sleeper") -> None:
    """Start ``sleep 300`` detached on the harness containerd and leave it running."""
    base = ["ctr", "--address", address, "-n", "wfe-leak-test"]
    subprocess.run([*base, "image", "pull", "--plain-http", ref], check=True, capture_output=True)
    subprocess.run(
        # runc state and the IO FIFOs under the harness's state dir, not /run/containerd
        [*base, "run", "-d", "--runc-root", f"{state}/runc", "--fifo-dir", f"{state}/fifo",
         ref, name, "sleep", "300"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def docker_sleeper(socket: str, ref: str, name: str = "leak-sleeper") -> str:
    """Pull ``ref`` into Docker and start ``sleep 300`` with network none; returns its id."""
    image, tag = ref.rsplit(":", 1)
    status, body = unix_request(
        socket, "POST", f"/images/create?fromImage={quote(image, safe='')}&tag={tag}", timeout=60
    )
    assert status == 200, body[-500:]
    spec: dict[str, Any] = {
        "Image": ref,
        "Cmd": ["sleep", "300"],
        "HostConfig": {"NetworkMode": "none"},
    }
    status, body = unix_request(socket, "POST", f"/containers/create?name={name}", spec)
    assert status == 201, body
    cid = str(json.loads(body)["Id"])
    status, body = unix_request(socket, "POST", f"/containers/{cid}/start", timeout=60)
    assert status == 204, body
    return cid


def footprint(base: str, daemon_pids: list[int]) -> dict[str, Any]:
    """PIDs (daemons, their children, shims, containers) and shim sockets of a running harness."""
    pids = set(daemon_pids)
    for pid in daemon_pids:
        pids.update(p.pid for p in processes.descendants(pid))
    for proc in processes.processes_mentioning(base):
        pids.add(proc.pid)
        pids.update(p.pid for p in processes.descendants(proc.pid))
    pids.discard(psutil.Process().pid)
    ours = set(cgroups_of(psutil.Process().pid))  # the daemons share the test process's cgroups
    cgroups = sorted({str(cg) for pid in pids for cg in cgroups_of(pid) if cg not in ours})
    return {
        "base": base,
        "pids": sorted(pids),
        "cgroups": cgroups,
        "sockets": [str(s) for s in shim_sockets(Path(base))],
    }
