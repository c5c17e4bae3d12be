"""``python -m tests.demo``: the main job on private daemons (what ``nox -s demo`` runs).

It starts containerd, Docker Engine (whose embedded BuildKit does the build) and a registry
through the test harness, pushes the harness's busybox base image, then runs
``wfe run examples/build-and-run.yaml`` against them: build ``examples/app``, push it, run its
tests in a container with containerd, and report. It prints where everything is and how to run
the workflow again against your own daemons, and tears the daemons down at the end (also on
Ctrl-C). ``--keep`` leaves them running and prints the ``export`` lines to reuse them.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.harness.requirements import HarnessUnavailable
from tests.harness.session import Harness

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "build-and-run.yaml"


def _wfe_command(inputs: dict[str, str], extra: list[str]) -> list[str]:
    beside = Path(sys.executable).with_name("wfe")
    wfe = str(beside) if beside.exists() else (shutil.which("wfe") or "wfe")
    command = [wfe, "run", str(WORKFLOW.relative_to(ROOT))]
    for key, value in inputs.items():
        command += ["-i", f"{key}={value}"]
    return command + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the daemons running")
    parser.add_argument("wfe_args", nargs="*", help="extra arguments for `wfe run` (e.g. --json)")
    args = parser.parse_args(argv)

    harness = Harness.create(tie_to_parent=not args.keep, mode="up" if args.keep else "demo")
    try:
        print("starting containerd, Docker Engine (BuildKit) and a registry under", harness.base)
        services = harness.ensure("containerd", "docker", "registry")
        base_image = harness.image("busybox")["refs"]["plain"]
        registry = services["registry"]["host"]
        inputs = {
            "registry": registry,
            "buildkit_addr": "docker+unix://" + services["docker"]["socket"],
            "containerd_addr": services["containerd"]["address"],
        }
        print(f"  registry         {registry}  (base image {base_image})")
        print(f"  BuildKit         {inputs['buildkit_addr']}")
        print(f"  containerd       {inputs['containerd_addr']}")
        print(f"  daemon logs      {harness.base}")
        command = _wfe_command(inputs, args.wfe_args)
        print("\n$ wfe", shlex.join(command[1:]), "\n", flush=True)
        code = subprocess.call(command, cwd=ROOT)
        print()
        print("workflow", "succeeded" if code == 0 else f"failed (exit {code})")
        print("\nTo run it again against your own daemons (a registry on loopback, BuildKit or")
        print("Docker Engine, containerd), pass their addresses as inputs, e.g.:")
        print("  wfe run examples/build-and-run.yaml -i registry=127.0.0.1:5000 \\")
        print("      -i buildkit_addr=unix:///run/buildkit/buildkitd.sock \\")
        print("      -i containerd_addr=/run/containerd/containerd.sock")
        print("(the registry must hold wfe/busybox:latest; see docs/getting-started.md)")
        if args.keep:
            harness.write_state()
            print(f"\ndaemons left running: export WFE_HARNESS={harness.state_path}")
            print("stop them with: python -m tests.harness down")
        return code
    except HarnessUnavailable as exc:
        print(f"demo: cannot start the daemons: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping the daemons", file=sys.stderr)
        return 130
    finally:
        if not args.keep:
            harness.close()
            print("daemons stopped; nothing left under", harness.base)


if __name__ == "__main__":
    sys.exit(main())
