"""``wfe gc``: the hook through which executors remove leftovers of crashed runs.

The core knows nothing about containers, so it only finds and calls hooks: for every installed
executor, the top-level package of its entry point (``wfe_containerd`` for
``wfe_containerd.executor:plugin``) may have a ``gc`` module with a ``collect_garbage()``
function, sync or async, taking no arguments. It may return lines to print (an iterable of
strings), a count of removed things, or None; it reports problems by raising. A package without
such a hook is skipped silently; a failing hook is reported and makes the exit code 1.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Iterable

from wfe_core.cli import EXIT_FAILED, EXIT_OK
from wfe_core.cli.diagnostics import print_error
from wfe_core.plugins import PluginRegistry

HOOK_MODULE = "gc"
HOOK_FUNCTION = "collect_garbage"


def hook_packages(registry: PluginRegistry) -> dict[str, str]:
    """Top-level package → executor type, for every installed executor (first type wins)."""
    packages: dict[str, str] = {}
    for name in registry.names():
        for info in registry.info(name):
            package = info.target.split(":", 1)[0].split(".", 1)[0]
            packages.setdefault(package, name)
    return packages


def gc_command() -> int:
    """``wfe gc``: run every executor's garbage-collection hook; 1 if any of them failed."""
    registry = PluginRegistry()
    status = EXIT_OK
    ran = 0
    for package, type_name in sorted(hook_packages(registry).items()):
        hook_module = f"{package}.{HOOK_MODULE}"
        try:
            module = importlib.import_module(hook_module)
        except Exception as exc:
            if isinstance(exc, ModuleNotFoundError) and exc.name in (hook_module, package):
                continue  # no hook: nothing to collect for this executor
            print_error(
                f"{type_name}: cannot import {hook_module}: {exc} "
                "(reinstall the executor's distribution; 'wfe plugins' names it)"
            )
            status = EXIT_FAILED
            continue
        hook = getattr(module, HOOK_FUNCTION, None)
        if not callable(hook):
            continue
        ran += 1
        try:
            outcome = hook()
            if inspect.isawaitable(outcome):
                outcome = asyncio.run(_await(outcome))
        except Exception as exc:
            print_error(f"{type_name}: garbage collection failed: {type(exc).__name__}: {exc}")
            status = EXIT_FAILED
            continue
        _report(type_name, outcome)
    if ran == 0:
        sys.stdout.write("no installed executor has a garbage-collection hook\n")
    return status


async def _await(awaitable: object) -> object:
    return await awaitable  # type: ignore[misc]


def _report(type_name: str, outcome: object) -> None:
    if outcome is None:
        sys.stdout.write(f"{type_name}: done\n")
    elif isinstance(outcome, int):
        sys.stdout.write(f"{type_name}: removed {outcome}\n")
    elif isinstance(outcome, str):
        sys.stdout.write(f"{type_name}: {outcome}\n")
    elif isinstance(outcome, Iterable):
        for line in outcome:
            sys.stdout.write(f"{type_name}: {line}\n")
    else:
        sys.stdout.write(f"{type_name}: {outcome}\n")


__all__ = ["HOOK_FUNCTION", "HOOK_MODULE", "gc_command", "hook_packages"]
