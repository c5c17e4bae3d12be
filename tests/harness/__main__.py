"""``python -m tests.harness up|down|env``: the test daemons for humans and benchmarks.

``up`` starts every daemon under a new temp dir, pushes the test images and prints
``export WFE_HARNESS=<state file>``; with that variable set the pytest fixtures reuse the daemons
instead of starting their own. ``env`` prints addresses; ``down`` stops everything by PID.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import images
from .paths import DIR_PREFIX, STATE_FILE
from .report import NOTES
from .requirements import HarnessUnavailable
from .session import SERVICES, Harness
from .teardown import stop_tree


def _find_state(explicit: str | None) -> Path:
    """The state file: ``--state``, else $WFE_HARNESS, else the only ``up`` harness in /tmp."""
    if explicit:
        return Path(explicit)
    if os.environ.get("WFE_HARNESS"):
        return Path(os.environ["WFE_HARNESS"])
    pattern = os.path.join(tempfile.gettempdir(), f"{DIR_PREFIX}*", STATE_FILE)
    candidates = []
    for path in glob.glob(pattern):
        try:
            if json.loads(Path(path).read_text()).get("mode") == "up":
                candidates.append(Path(path))
        except (OSError, ValueError):
            continue
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise SystemExit("no harness found: set WFE_HARNESS or pass --state (run `up` first)")
    listed = "\n  ".join(str(c) for c in candidates)
    raise SystemExit(f"several harnesses are up; pick one with --state:\n  {listed}")


def env_lines(state: dict[str, Any], state_path: Path) -> list[str]:
    """Shell ``export`` lines for the addresses in a state file."""
    services = state.get("services", {})
    out = {"WFE_HARNESS": str(state_path)}
    if "containerd" in services:
        out["WFE_CONTAINERD_ADDRESS"] = services["containerd"]["address"]
    if "docker" in services:
        out["DOCKER_HOST"] = services["docker"]["host"]
        out["BUILDKIT_HOST"] = "docker+unix://" + services["docker"]["socket"]
    if "registry" in services:
        out["WFE_REGISTRY"] = services["registry"]["host"]
    if "auth_registry" in services:
        auth = services["auth_registry"]
        out["WFE_AUTH_REGISTRY"] = auth["host"]
        out["WFE_AUTH_REGISTRY_USERNAME"] = auth["username"]
        out["WFE_AUTH_REGISTRY_PASSWORD"] = auth["password"]
    for name, record in sorted(state.get("images", {}).items()):
        out[f"WFE_IMAGE_{name.upper()}"] = record["refs"]["plain"]
    return [f"export {key}={shlex.quote(value)}" for key, value in out.items()]


def cmd_up(args: argparse.Namespace) -> int:
    harness = Harness.create(tie_to_parent=False, mode="up")
    try:
        started = time.monotonic()
        infos = harness.ensure(*SERVICES)
        daemons_s = time.monotonic() - started
        per = ", ".join(f"{n} {i['ready_seconds']:.2f}s" for n, i in infos.items())
        print(f"daemons ready in {daemons_s:.2f} s ({per})", file=sys.stderr)
        names = list(images.EAGER) + (["large"] if args.with_large else [])
        started = time.monotonic()
        harness.ensure_images(*names)
        print(
            f"images {', '.join(names)} pushed in {time.monotonic() - started:.2f} s",
            file=sys.stderr,
        )
        harness.state["startup_seconds"] = round(daemons_s, 3)
        harness.write_state()
    except (HarnessUnavailable, KeyboardInterrupt, Exception) as exc:
        print(f"harness up failed: {exc}", file=sys.stderr)
        harness.close()
        return 1
    print("\n".join(env_lines(harness.state, harness.state_path)))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    path = _find_state(args.state)
    state = json.loads(path.read_text())
    if args.json:
        print(json.dumps(state, indent=2, sort_keys=True))
    else:
        print("\n".join(env_lines(state, path)))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    path = _find_state(args.state)
    state = json.loads(path.read_text())
    started = time.monotonic()
    problems = stop_tree(Path(state["base"]), state.get("services", {}))
    for line in NOTES:
        print(f"harness down: {line}", file=sys.stderr)
    for problem in problems:
        print(f"harness down: {problem}", file=sys.stderr)
    print(
        f"harness at {state['base']} stopped in {time.monotonic() - started:.2f} s", file=sys.stderr
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="start all daemons, push test images, print exports")
    up.add_argument("--with-large", action="store_true", help="also push the ~60 MB image")
    up.set_defaults(func=cmd_up)
    for name, func, text in (
        ("env", cmd_env, "print the addresses of a running harness"),
        ("down", cmd_down, "stop a running harness by PID and remove its directory"),
    ):
        sub = verbs.add_parser(name, help=text)
        sub.add_argument("--state", help="state file (default: $WFE_HARNESS)")
        if name == "env":
            sub.add_argument("--json", action="store_true", help="print the whole state file")
        sub.set_defaults(func=func)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
