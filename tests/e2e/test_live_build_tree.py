"""The live tree for a real build, recorded with tmux: BuildKit vertices under the build step.

A buildkit step whose RUN takes two seconds, against the harness Docker Engine, runs in a tmux
pane; while the RUN is in progress the screen must show the step tree with the build's vertices
nested under the build step (done ones with their marker, the running RUN), and at the end the
finished tree with the vertex summary.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.harness import DockerDaemon, TestImages

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="apt-get install tmux")


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def test_build_vertices_live_under_the_build_step(
    tmp_path: Path, docker_daemon: DockerDaemon, test_images: TestImages
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello.txt").write_text("hello\n")
    (context / "Dockerfile").write_text(
        f"FROM {test_images.ref('busybox')}\nCOPY hello.txt /hello.txt\n"
        f"RUN sleep 2 && cat /hello.txt\n"
    )
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(textwrap.dedent(f"""\
        workflow:
          id: live-build
          steps:
            - name: build
              type: buildkit
              config:
                buildkit_addr: docker+unix://{docker_daemon.socket}
                context: ctx
                network: none
                no_cache: true
                output_type: tar
                output_dest: out/image.tar
        """))
    done = tmp_path / "exit-code"
    session = f"wfe-e2e-{uuid.uuid4().hex[:8]}"
    _tmux("new-session", "-d", "-s", session, "-x", "140", "-y", "45", "-e", "TERM=xterm-256color")
    screens: list[str] = []
    try:
        wfe = Path(sys.executable).with_name("wfe")
        _tmux("send-keys", "-t", session, f"{wfe} run {workflow}; echo $? > {done}", "Enter")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done.exists():
            screens.append(_tmux("capture-pane", "-p", "-t", session))
            time.sleep(0.1)
        assert done.exists(), _tmux("capture-pane", "-p", "-t", session)
        final = _tmux("capture-pane", "-p", "-t", session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert done.read_text().strip() == "0", final

    def tree_lines(screen: str) -> list[str]:
        # Streamed log lines look like "build │ #7 ..."; the tree's lines start with box art.
        return [line for line in screen.splitlines() if line.lstrip().startswith(("├", "└", "│"))]

    during = [s for s in screens if any("RUN sleep 2" in line for line in tree_lines(s))]
    last = screens[-1] if screens else ""
    assert during, "no screen showed the RUN vertex in the tree:\n" + last
    screen = during[-1]
    assert "wfe live-build" in screen
    assert "build (buildkit)" in screen
    assert any("COPY hello.txt" in line for line in tree_lines(screen))
    assert "✓ build (buildkit)" in final
    assert "run succeeded in" in final
