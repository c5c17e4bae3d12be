"""The harness's test images, written as OCI layouts from Debian's busybox-static and pushed.

Nothing is downloaded: every image is assembled here from ``/bin/busybox``. What each image
contains is part of the test contract (other tests assert on it), so the facts live in the
constants below and in docs/testing.md.

- ``busybox``: one layer, busybox plus an applet symlink per command in /bin, /etc/passwd and
  /etc/group for root and nobody; Cmd ["sh"].
- ``rich``: three layers (busybox base; user ``app`` uid/gid 1000 with home; /app with an
  entrypoint script); config sets Env, WorkingDir, Entrypoint, Cmd, User and a label.
- ``multiarch``: an OCI index with linux/amd64 and linux/arm64/v8 manifests (same busybox files;
  ``WFE_PLATFORM`` in Env tells which one was picked).
- ``large``: busybox base plus four layers of 15 MiB incompressible data (benchmarks); built only
  when asked for.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .oci_layout import Layer, LayerBuilder, OCILayout

TAG = "latest"
REPO_PREFIX = "wfe"
NAMES = ("busybox", "rich", "multiarch", "large")
#: Images built and pushed eagerly (``large`` is lazy: it is slow).
EAGER = ("busybox", "rich", "multiarch")

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ROOT_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
ROOT_GROUP = "root:x:0:\nnobody:x:65534:\n"

RICH_USER = "app"
RICH_UID = 1000
RICH_GID = 1000
RICH_ENV = (PATH_ENV, "WFE_IMAGE=rich", "GREETING=hello from rich")
RICH_WORKDIR = "/app"
RICH_ENTRYPOINT = ("/app/entrypoint.sh",)
RICH_CMD = ("echo", "rich default cmd")
RICH_LABELS = {"org.wfe.test.image": "rich"}
#: The entrypoint exports this (value ``ran``) and execs its arguments.
RICH_ENTRYPOINT_MARKER = "WFE_ENTRYPOINT"
RICH_ENTRYPOINT_SCRIPT = (
    "#!/bin/sh\n"
    "# wfe test image 'rich': mark that the entrypoint ran, then run the command.\n"
    f"export {RICH_ENTRYPOINT_MARKER}=ran\n"
    'exec "$@"\n'
)

MULTIARCH_PLATFORMS = (("amd64", None), ("arm64", "v8"))
LARGE_LAYERS = 4
LARGE_LAYER_BYTES = 15 * 1024 * 1024


def host_architecture() -> str:
    """The OCI architecture name of this machine."""
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def busybox_binary() -> Path:
    found = shutil.which("busybox") or "/bin/busybox"
    return Path(found).resolve()


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    return sorted({a for a in out.stdout.split() if a and a != "busybox" and "/" not in a})


def busybox_layer() -> Layer:
    """The base layer: busybox, its applets, a minimal /etc and the usual mount points."""
    busybox = busybox_binary()
    layer = LayerBuilder()
    for d in ("bin", "dev", "etc", "home", "proc", "sys", "usr", "usr/bin", "var"):
        layer.dir(d)
    layer.dir("tmp", 0o1777).dir("root", 0o700)
    layer.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in _applets(busybox):
        layer.symlink(f"bin/{applet}", "busybox")
    layer.symlink("usr/bin/env", "/bin/busybox")
    layer.file("etc/passwd", ROOT_PASSWD.encode())
    layer.file("etc/group", ROOT_GROUP.encode())
    return Layer.from_builder(layer)


def _base_config(**extra: object) -> dict[str, object]:
    return {"Env": [PATH_ENV], "Cmd": ["sh"], **extra}


def build_busybox(out: OCILayout, base: Layer) -> dict[str, object]:
    return out.image([base], _base_config(), architecture=host_architecture())


def build_rich(out: OCILayout, base: Layer) -> dict[str, object]:
    users = LayerBuilder()
    users.dir("etc")
    app_entry = f"{RICH_USER}:x:{RICH_UID}:{RICH_GID}:app:/home/app:/bin/sh\n"
    users.file("etc/passwd", (ROOT_PASSWD + app_entry).encode())
    users.file("etc/group", (ROOT_GROUP + f"{RICH_USER}:x:{RICH_GID}:\n").encode())
    users.dir("home").dir("home/app", 0o755, RICH_UID, RICH_GID)
    app = LayerBuilder()
    app.dir("app", 0o755, RICH_UID, RICH_GID)
    app.file("app/entrypoint.sh", RICH_ENTRYPOINT_SCRIPT.encode(), 0o755)
    app.file("app/data.txt", b"wfe rich image data\n", 0o644, RICH_UID, RICH_GID)
    config = {
        "User": RICH_USER,
        "Env": list(RICH_ENV),
        "WorkingDir": RICH_WORKDIR,
        "Entrypoint": list(RICH_ENTRYPOINT),
        "Cmd": list(RICH_CMD),
        "Labels": dict(RICH_LABELS),
    }
    layers = [base, Layer.from_builder(users), Layer.from_builder(app)]
    return out.image(layers, config, architecture=host_architecture())


def build_multiarch(out: OCILayout, base: Layer) -> dict[str, object]:
    manifests = []
    for arch, variant in MULTIARCH_PLATFORMS:
        plat = f"linux/{arch}" + (f"/{variant}" if variant else "")
        config = {"Env": [PATH_ENV, f"WFE_PLATFORM={plat}"], "Cmd": ["sh"]}
        manifests.append(out.image([base], config, architecture=arch, variant=variant))
    return out.index(manifests)


def build_large(out: OCILayout, base: Layer) -> dict[str, object]:
    layers = [base]
    for n in range(LARGE_LAYERS):
        data = random.Random(f"wfe-large-{n}").randbytes(LARGE_LAYER_BYTES)
        builder = LayerBuilder().dir("data").file(f"data/blob-{n}.bin", data)
        layers.append(Layer.from_builder(builder, level=1))
    return out.image(layers, _base_config(), architecture=host_architecture())


BUILDERS: dict[str, Callable[[OCILayout, Layer], dict[str, object]]] = {
    "busybox": build_busybox,
    "rich": build_rich,
    "multiarch": build_multiarch,
    "large": build_large,
}


def build_layout(name: str, directory: Path, base: Layer | None = None) -> str:
    """Write image ``name`` as an OCI layout in ``directory`` tagged TAG; returns its digest.

    The digest is the manifest's (or, for ``multiarch``, the index's); it is preserved by the
    push, so it is also the digest in the registry.
    """
    if name not in BUILDERS:
        raise KeyError(f"unknown harness image {name!r}; known: {', '.join(NAMES)}")
    layout = OCILayout(directory)
    descriptor = BUILDERS[name](layout, base or busybox_layer())
    layout.tag(descriptor, TAG)
    return str(descriptor["digest"])


def repository(host: str, name: str) -> str:
    return f"{host}/{REPO_PREFIX}/{name}"


def push(
    layout_dir: Path,
    name: str,
    host: str,
    *,
    creds: tuple[str, str] | None = None,
    tmpdir: Path | None = None,
) -> str:
    """Push a layout to ``host`` with skopeo (digests preserved); returns the pushed reference."""
    ref = f"{repository(host, name)}:{TAG}"
    argv = [
        "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
        "--dest-tls-verify=false", "--retry-times", "2",
    ]  # fmt: skip
    if creds is not None:
        argv += ["--dest-creds", f"{creds[0]}:{creds[1]}"]
    argv += [f"oci:{layout_dir}:{TAG}", f"docker://{ref}"]
    env = None
    if tmpdir is not None:
        env = {**os.environ, "TMPDIR": str(tmpdir)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo push of {name} to {host} failed:\n{result.stderr[-4000:]}")
    return ref
