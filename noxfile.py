"""Developer and CI tasks: ``nox -s tests | lint | typecheck | protos | daemons | bench | demo``.

Every session installs the three distributions editable into its own virtualenv, so a fresh
machine needs nothing but Python, nox and the Debian packages that ``.ci/run`` installs.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import nox

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
    """mypy --strict on the core and both clients."""
    _install(session, "mypy", "types-PyYAML", "grpc-stubs", *TEST_DEPS)
    session.run(
        "mypy", "wfe_core", "plugins/wfe_buildkit/wfe_buildkit",
        "plugins/wfe_containerd/wfe_containerd",
    )


def generate_protos(plugin_dir: Path, out_dir: Path) -> None:
    """Run protoc for one plugin: sources are ``<plugin>/<package>/_pb/**/*.proto``.

    The include root is the plugin directory, so the generated modules import each other as
    ``<package>._pb.<name>_pb2``. Well-known types come from grpc_tools, ``google.rpc`` from
    googleapis-common-protos.
    """
    import grpc_tools
    from grpc_tools import protoc

    package = plugin_dir.name
    sources = sorted(str(p.relative_to(plugin_dir)) for p in (plugin_dir / package / "_pb").rglob("*.proto"))
    if not sources:
        return
    includes = [str(plugin_dir), str(Path(grpc_tools.__file__).parent / "_proto")]
    try:
        import google.rpc

        includes.append(str(Path(list(google.rpc.__path__)[0]).parent.parent))
    except ImportError:
        pass
    cwd = os.getcwd()
    os.chdir(plugin_dir)
    try:
        args = ["protoc", *[f"-I{i}" for i in includes]]
        args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
        code = protoc.main([*args, *sources])
    finally:
        os.chdir(cwd)
    if code != 0:
        raise RuntimeError(f"protoc failed for {package} with exit code {code}")


def _generated(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
    }


def check_protos_current() -> list[str]:
    """Regenerate every plugin's stubs into a temp dir; return the files that differ."""
    stale: list[str] = []
    for name in PLUGINS:
        plugin_dir = ROOT / "plugins" / name
        with tempfile.TemporaryDirectory() as tmp:
            generate_protos(plugin_dir, Path(tmp))
            fresh = _generated(Path(tmp))
            current = _generated(plugin_dir)
            for path in sorted(set(fresh) | set(current)):
                if fresh.get(path) != current.get(path):
                    stale.append(f"plugins/{name}/{path}")
    return stale


@nox.session
def protos(session: nox.Session) -> None:
    """Regenerate the checked-in gRPC stubs (``-- --check`` only reports stale ones)."""
    session.install(GRPC_TOOLS, "googleapis-common-protos")
    if "--check" in session.posargs:
        session.run("python", "-c", "import noxfile, sys; s = noxfile.check_protos_current(); "
                    "print('\\n'.join(s) or 'stubs are current'); sys.exit(1 if s else 0)")
        return
    session.run("python", "-c", "import noxfile; from pathlib import Path; "
                "[noxfile.generate_protos(noxfile.ROOT / 'plugins' / n, noxfile.ROOT / 'plugins' / n) "
                "for n in noxfile.PLUGINS]")


@nox.session
def daemons(session: nox.Session) -> None:
    """Start or stop the test daemons for humans: ``nox -s daemons -- up|down|env``."""
    _install(session, *TEST_DEPS)
    session.run("python", "-m", "tests.harness", *(session.posargs or ["env"]), external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks in benchmarks/ (measured and printed, never asserted)."""
    _install(session, *TEST_DEPS, "pytest-benchmark")
    scripts = session.posargs or sorted(str(p) for p in (ROOT / "benchmarks").glob("*.py"))
    for script in scripts:
        session.run("python", script)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: start the daemons, build + push + run examples/build-and-run.yaml."""
    _install(session, *TEST_DEPS)
    session.run("python", "-m", "tests.harness", "demo", *session.posargs)


if __name__ == "__main__":  # pragma: no cover - convenience for `python noxfile.py`
    sys.exit(shutil.which("nox") is None)
