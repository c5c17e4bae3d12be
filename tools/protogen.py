"""Generate and check the checked-in gRPC stubs of the plugins.

Kept apart from noxfile.py so the test suite can check staleness without nox installed:
``tests/test_protos_current.py`` regenerates into a temp dir and compares byte for byte.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ("wfe_buildkit", "wfe_containerd")


def generate_protos(plugin_dir: Path, out_dir: Path) -> None:
    """Run protoc for one plugin: sources are ``<plugin>/<package>/_pb/**/*.proto``.

    The include root is the plugin directory, so the generated modules import each other as
    ``<package>._pb.<name>_pb2``. Well-known types come from grpc_tools, ``google.rpc`` from
    googleapis-common-protos.
    """
    import grpc_tools
    from grpc_tools import protoc

    package = plugin_dir.name
    proto_dir = plugin_dir / package / "_pb"
    sources = sorted(str(p.relative_to(plugin_dir)) for p in proto_dir.rglob("*.proto"))
    if not sources:
        return
    includes = [str(plugin_dir), str(Path(grpc_tools.__file__).parent / "_proto")]
    try:
        import google.rpc

        includes.append(str(Path(next(iter(google.rpc.__path__))).parent.parent))
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


def main(argv: list[str]) -> int:
    """``protogen.py`` regenerates every plugin's stubs; ``--check`` only lists stale files."""
    if "--check" in argv:
        stale = check_protos_current()
        print("\n".join(stale) if stale else "stubs are current")
        return 1 if stale else 0
    for name in PLUGINS:
        generate_protos(ROOT / "plugins" / name, ROOT / "plugins" / name)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
