"""Helpers to create test contexts and compare directory trees (modes, symlinks, bytes)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def make_tree(root: Path, spec: dict[str, object]) -> None:
    """Create ``spec``: path -> bytes/str (file), None (empty dir), ("link", target),
    ("exec", content) for a 0755 file."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, value in spec.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if value is None:
            path.mkdir(parents=True, exist_ok=True)
        elif isinstance(value, tuple) and value[0] == "link":
            os.symlink(str(value[1]), path)
        elif isinstance(value, tuple) and value[0] == "exec":
            path.write_bytes(_bytes(value[1]))
            path.chmod(0o755)
        else:
            path.write_bytes(_bytes(value))
            path.chmod(0o644)


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """path -> (kind, permission bits, content or link target) for everything under root."""
    out: dict[str, tuple[str, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", perm, b"")
            else:
                out[rel] = ("file", perm, full.read_bytes())
    return out
