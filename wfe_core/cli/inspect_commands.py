"""``wfe validate``, ``wfe plugins``, ``wfe schema`` and ``wfe graph``: commands that read
workflows or the installed executors without running anything."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from wfe_core.cli import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from wfe_core.cli.diagnostics import print_diagnostics, print_error
from wfe_core.plugins import PluginRegistry


def validate_command(files: Sequence[Path]) -> int:
    """Compile each file; print all diagnostics; exit 2 if any file has an error."""
    from wfe_core.compiler import compile_file

    registry = PluginRegistry()
    failed = False
    for file in files:
        result = compile_file(file, registry)
        print_diagnostics(result.diagnostics)
        if result.ok:
            ids = ", ".join(w.id for w in result.workflows)
            warnings = len(result.diagnostics)
            extra = f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else ""
            sys.stdout.write(f"{file}: ok ({ids}{extra})\n")
        else:
            failed = True
            count = len(result.errors)
            sys.stdout.write(f"{file}: {count} error{'s' if count != 1 else ''}\n")
    return EXIT_INVALID if failed else EXIT_OK


def plugins_command() -> int:
    """One line per executor type; broken plugins are reported with their distribution."""
    registry = PluginRegistry()
    loaded = registry.load_all()
    rows: list[tuple[str, str, str, str]] = []
    for name in registry.names():
        infos = registry.info(name)
        dist = ", ".join(i.distribution for i in infos) or "<in-process>"
        version = ", ".join(i.version for i in infos if i.version)
        plugin = loaded.get(name)
        description = plugin.description if plugin is not None else "(not loaded, see below)"
        rows.append((name, dist, version, description))
    header = ("TYPE", "DISTRIBUTION", "VERSION", "DESCRIPTION")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        sys.stdout.write("  ".join([*cells, row[3]]).rstrip() + "\n")
    errors = registry.errors()
    for error in errors:
        print_error(str(error))
    return EXIT_FAILED if errors else EXIT_OK


def schema_command(type_name: str | None) -> int:
    """The workflow format's JSON Schema, or one executor's config schema."""
    from wfe_core.compiler.suggest import did_you_mean
    from wfe_core.schema import executor_schema, workflow_schema

    registry = PluginRegistry()
    if type_name is None:
        schema = workflow_schema(registry)
    else:
        plugin = registry.get(type_name)
        if plugin is None:
            problem = registry.error(type_name)
            if problem is None:
                known = registry.names()
                close = did_you_mean(type_name, known)
                print_error(
                    f"no executor {type_name!r} is installed (installed: "
                    f"{', '.join(known) or 'none'})" + (f"; {close}" if close else "")
                )
            else:
                print_error(str(problem))
            return EXIT_INVALID
        schema = executor_schema(plugin)
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
    for error in registry.errors():
        print_error(str(error))
    return EXIT_OK


def graph_command(file: Path, fmt: str, workflow_id: str | None) -> int:
    """Compile ``file`` and print its step graph."""
    from wfe_core.compiler import CompileError, compile_file
    from wfe_core.graph import render_graph

    if fmt == "mermaid":
        kind: Literal["mermaid", "dot"] = "mermaid"
    elif fmt == "dot":
        kind = "dot"
    else:
        print_error(f"unknown graph format {fmt!r}; use mermaid or dot")
        return EXIT_INVALID
    result = compile_file(file, PluginRegistry())
    print_diagnostics(result.diagnostics)
    if not result.ok:
        return EXIT_INVALID
    try:
        workflows = (
            [result.select(workflow_id)]
            if workflow_id or len(result.workflows) == 1
            else list(result.workflows)
        )
    except CompileError as exc:
        print_diagnostics(exc.diagnostics)
        return EXIT_INVALID
    sys.stdout.write("\n".join(render_graph(w, fmt=kind) for w in workflows).rstrip("\n") + "\n")
    return EXIT_OK


__all__ = ["graph_command", "plugins_command", "schema_command", "validate_command"]
