"""examples/buildkit/build.yaml through ``wfe run``: image digest, local and tar exports.

The exported ``/app`` must equal the example context byte for byte (modes, symlinks, empty
directories), minus what its ``.dockerignore`` excludes, plus the file the RUN step wrote.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.buildkit.trees import snapshot

pytestmark = pytest.mark.daemon

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "buildkit"


def test_example_workflow(tmp_path: Path, bk_address: str, busybox: str) -> None:
    example = tmp_path / "example"
    shutil.copytree(EXAMPLE, example, symlinks=True, ignore=shutil.ignore_patterns("out"))
    proc = subprocess.run(
        [sys.executable, "-c", "from wfe_core.cli import main; main()", "run",
         str(example / "build.yaml"), "-i", f"base={busybox}", "-i",
         f"buildkit_addr={bk_address}", "--json"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    steps = result["steps"]
    digest = steps["image"]["outputs"]["digest"]
    assert digest.startswith("sha256:") and len(digest) == 71
    assert steps["image"]["outputs"]["tags"] == ["wfe-example/app:dev"]

    expected = snapshot(example / "context")
    for ignored in ("notes", "notes/todo.md", "scratch.tmp"):
        del expected[ignored]
    rootfs = Path(steps["export-local"]["outputs"]["output_dest"])
    assert rootfs == example / "out" / "rootfs"
    received = snapshot(rootfs / "app")
    assert received.pop("built-by-run.txt")[2] == b"hello from the build context\n"
    assert received == expected

    with tarfile.open(steps["export-tar"]["outputs"]["output_dest"]) as tar:
        names = {m.name.lstrip("./").rstrip("/") for m in tar.getmembers()}
    assert {f"app/{p}" for p in expected} | {"app/built-by-run.txt"} <= names
    assert not {n for n in names if n.startswith("app/notes")}
