"""The example third-party executor, installed like an outside author's package would be.

``pip install`` puts examples/third_party into a temporary ``--target`` directory (no
dependencies, no index, no build isolation: nothing is downloaded) and ``wfe`` runs in a
subprocess with that directory on ``PYTHONPATH``: the entry point mechanism end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.wfe_cli import run_wfe

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "third_party"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = build / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(build)},
    )
    assert (target / "wfe_checksum" / "__init__.py").exists()
    return target


def wfe(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_wfe(target, *args)


def test_listed_by_wfe_plugins(target: Path) -> None:
    proc = wfe(target, "plugins")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("checksum "))
    assert line.split()[1:3] == ["wfe-checksum", "0.1.0"]


def test_runs_in_a_workflow(target: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"wfe" * 1000)
    expected = hashlib.sha256(data.read_bytes()).hexdigest()
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        textwrap.dedent(f"""\
        workflow:
          id: third-party
          version: 1
          steps:
            - name: digest
              type: checksum
              config: {{path: data.bin, expect: {expected}}}
            - name: use
              type: shell
              config: {{run: "echo got ${{{{ steps.digest.outputs.digest }}}}"}}
        """)
    )
    proc = wfe(target, "run", str(workflow), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["steps"]["digest"]["outputs"] == {
        "digest": expected,
        "algorithm": "sha256",
        "size": 3000,
    }
    assert result["steps"]["use"]["outputs"]["stdout"] == f"got {expected}\n"


def test_validator_diagnostics_point_at_keys(target: Path, tmp_path: Path) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        textwrap.dedent("""\
        workflow:
          id: bad
          version: 1
          steps:
            - name: digest
              type: checksum
              config:
                path: missing.bin
                algorithm: sha265
        """)
    )
    proc = wfe(target, "validate", str(workflow))
    assert proc.returncode == 2
    assert f"{workflow}:9:" in proc.stderr and "error[CHK001]" in proc.stderr
    assert "did you mean 'sha256'" in proc.stderr
    assert f"{workflow}:8:" in proc.stderr and "error[CHK002]" in proc.stderr


def test_mismatch_fails_the_step(target: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        textwrap.dedent(f"""\
        workflow:
          id: mismatch
          version: 1
          steps:
            - name: digest
              type: checksum
              config: {{path: f, algorithm: md5, expect: "{"0" * 32}"}}
        """)
    )
    proc = wfe(target, "run", str(workflow))
    assert proc.returncode == 1
    assert "expected 000000" in proc.stdout
