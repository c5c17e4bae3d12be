"""Developer and CI tasks: ``nox -s tests | lint | typecheck | protos | daemons | bench | demo``.

Every session installs the three distributions editable into its own virtualenv, so a fresh
machine needs nothing but Python, nox and the Debian packages that ``.ci/run`` installs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent / "tools"))
from protogen import check_protos_current, generate_protos  # noqa: F401 (re-exported)

ROOT = Path(__file__).parent
PLUGINS = ("wfe_buildkit", "wfe_containerd")
GRPC_TOOLS = "grpcio-tools==1.85.1"
TEST_DEPS = ["pytest>=8", "pytest-timeout", "pytest-asyncio>=0.23", "jsonschema", "psutil"]
PROJECT = ["-e", ".", "-e", "plugins/wfe_buildkit", "-e", "plugins/wfe_containerd"]

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, *extra: str) -> None:
    session.install(*PROJECT, *extra)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, real daemons included (started by the harness in tests/harness)."""
    _install(session, *TEST_DEPS, GRPC_TOOLS)
    args = session.posargs or ["-ra", "tests"]
    session.run("python", "-m", "pytest", *args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything but the generated stubs."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", ".", success_codes=[0, 1])


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the core, both clients and the test harness."""
    _install(session, "mypy", "types-PyYAML", *TEST_DEPS)
    session.run(
        "mypy",
        "wfe_core",
        "plugins/wfe_buildkit/wfe_buildkit",
        "plugins/wfe_containerd/wfe_containerd",
        "tests/harness",
        "tests/conftest.py",
    )


@nox.session
def protos(session: nox.Session) -> None:
    """Regenerate the checked-in gRPC stubs (``-- --check`` only reports stale ones)."""
    session.install(GRPC_TOOLS, "googleapis-common-protos")
    if "--check" in session.posargs:
        session.run("python", "tools/protogen.py", "--check")
        return
    session.run("python", "tools/protogen.py")


@nox.session
def daemons(session: nox.Session) -> None:
    """Start or stop the test daemons for humans: ``nox -s daemons -- up|down|env``."""
    _install(session, *TEST_DEPS)
    session.run("python", "-m", "tests.harness", *(session.posargs or ["env"]), external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks in benchmarks/ (measured and printed, never asserted)."""
    _install(session, *TEST_DEPS)
    scripts = session.posargs or sorted(str(p) for p in (ROOT / "benchmarks").glob("*.py"))
    for script in scripts:
        session.run("python", script)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: start the daemons, build + push + run examples/build-and-run.yaml."""
    _install(session, *TEST_DEPS)
    session.run("python", "-m", "tests.demo", *session.posargs)


if __name__ == "__main__":  # pragma: no cover - convenience for `python noxfile.py`
    sys.exit(shutil.which("nox") is None)
