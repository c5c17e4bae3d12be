"""The containerd examples end to end through ``wfe run`` against the harness daemons.

Also the leak check of the acceptance list: runs that succeed, fail, time out, and a ``wfe run``
interrupted with SIGINT leave no container, task, lease, active snapshot or FIFO directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.containerd.conftest import our_leftovers
from tests.harness import ContainerdDaemon, RegistryServer, TestImages

pytestmark = pytest.mark.daemon

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "containerd"
WFE = [sys.executable, "-c", "import sys; from wfe_core.cli import main; sys.exit(main())"]


@pytest.fixture
def inputs(
    containerd_daemon: ContainerdDaemon,
    registry: RegistryServer,
    auth_registry: RegistryServer,
    test_images: TestImages,
    namespace: str,
) -> list[str]:
    test_images.ref("rich")  # make sure the images are pushed
    return [
        "-i",
        f"registry={registry.host}",
        "-i",
        f"auth_registry={auth_registry.host}",
        "-i",
        f"containerd_addr={containerd_daemon.address}",
        "-i",
        f"namespace={namespace}-e2e",
    ]


def wfe_run(example: str, inputs: list[str], env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [*WFE, "run", str(EXAMPLES / example), *inputs, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"no JSON from wfe run: {proc.stdout}\n{proc.stderr}") from None


def run_env(auth_registry: RegistryServer, namespace: str) -> dict[str, str]:
    env = dict(os.environ)
    env["WFE_AUTH_REGISTRY_USERNAME"] = auth_registry.username
    env["WFE_AUTH_REGISTRY_PASSWORD"] = auth_registry.password
    return env


def only_wfe_run_inputs(example: str, inputs: list[str]) -> list[str]:
    """Pass only the inputs an example declares (unknown inputs are errors)."""
    text = (EXAMPLES / example).read_text()
    kept: list[str] = []
    for flag, value in zip(inputs[::2], inputs[1::2], strict=True):
        if f"{value.split('=', 1)[0]}:" in text:
            kept += [flag, value]
    return kept


@pytest.mark.parametrize(
    ("example", "code", "check"),
    [
        (
            "pull-and-run.yaml",
            0,
            lambda s: s["authenticated"]["outputs"]["stdout"] == "pulled with credentials\n",
        ),
        (
            "run-and-outputs.yaml",
            0,
            lambda s: s["consume"]["outputs"]["stdout"] == "blue: hello from the host\n",
        ),
        ("network-none.yaml", 0, lambda s: s["interfaces"]["outputs"]["interfaces"] == "lo "),
        ("oom.yaml", 1, lambda s: "OOM" in s["hog"]["error"]),
        ("timeout.yaml", 1, lambda s: "timed out" in s["sleeper"]["error"]),
    ],
)
async def test_example(
    example: str,
    code: int,
    check: Any,
    inputs: list[str],
    auth_registry: RegistryServer,
    namespace: str,
    address: str,
) -> None:
    start = time.monotonic()
    returncode, result = wfe_run(
        example, only_wfe_run_inputs(example, inputs), run_env(auth_registry, namespace)
    )
    assert returncode == code, result
    assert check(result["steps"]), result["steps"]
    if example == "timeout.yaml":
        assert time.monotonic() - start < 2 + 1 + 2 + 3  # timeout + grace + 2 s + startup
    assert auth_registry.password not in json.dumps(result)
    left = await our_leftovers(address, f"{namespace}-e2e", any_owner=True)
    assert not [item for item in left if not item.startswith("dir ")], left


async def test_sigint_to_wfe_run_leaves_nothing(
    inputs: list[str],
    auth_registry: RegistryServer,
    namespace: str,
    address: str,
) -> None:
    proc = subprocess.Popen(
        [*WFE, "run", str(EXAMPLES / "timeout.yaml"), *only_wfe_run_inputs("timeout.yaml", inputs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=run_env(auth_registry, namespace),
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "sleeper" in line and "started" in line:
                break
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    left = await our_leftovers(address, f"{namespace}-e2e", pid=proc.pid)
    assert not left, left
