"""The Typer application: command definitions only. Each command's work lives in its own module
and is imported when the command runs, so ``wfe --help`` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

HELP = """wfe runs YAML workflows whose steps build images with BuildKit, run containers with
containerd, run shell commands, or use any installed executor plugin.

Exit codes: 0 success, 1 a step failed, 2 invalid input, 130 interrupted."""


def _done(code: int) -> None:
    """End a command with ``code``: raised, so that it also works in standalone mode."""
    if code:
        raise typer.Exit(code)


def build_app() -> typer.Typer:
    """Create the app (a function, so importing this module costs nothing but Typer)."""
    app = typer.Typer(
        name="wfe",
        help=HELP,
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain click help: rendering it with rich costs ~0.1 s
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.command()
    def run(
        file: Annotated[
            Path, typer.Argument(help="The workflow file.", show_default=False, metavar="FILE")
        ],
        input: Annotated[
            list[str] | None,
            typer.Option(
                "--input",
                "-i",
                metavar="KEY=VALUE",
                help="A workflow input (repeatable); typed per the workflow's inputs.",
            ),
        ] = None,
        workflow: Annotated[
            str | None,
            typer.Option("--workflow", "-w", help="Which workflow, when the file has several."),
        ] = None,
        jobs: Annotated[
            int | None,
            typer.Option(
                "--jobs",
                "-j",
                min=1,
                help="How many steps may run at once in parallel blocks "
                "[default: CPUs, at least 4].",
            ),
        ] = None,
        json_output: Annotated[
            bool,
            typer.Option(
                "--json", help="Print one JSON result object on stdout (progress goes to stderr)."
            ),
        ] = False,
        keep_workspace: Annotated[
            bool, typer.Option("--keep-workspace", help="Keep the run's workspace directory.")
        ] = False,
    ) -> None:
        """Run a workflow, showing live progress."""
        from wfe_core.cli.run_command import run_command

        _done(run_command(file, input or [], workflow, jobs, json_output, keep_workspace))

    @app.command()
    def validate(
        files: Annotated[
            list[Path],
            typer.Argument(help="Workflow files.", show_default=False, metavar="FILE..."),
        ],
    ) -> None:
        """Check workflow files and print every problem found (exit 2 if any error)."""
        from wfe_core.cli.inspect_commands import validate_command

        _done(validate_command(files))

    @app.command()
    def plugins() -> None:
        """List installed executors: type, distribution, version, description."""
        from wfe_core.cli.inspect_commands import plugins_command

        _done(plugins_command())

    @app.command()
    def schema(
        type: Annotated[
            str | None,
            typer.Argument(
                help="Only this executor type's config schema.",
                show_default=False,
                metavar="TYPE",
            ),
        ] = None,
    ) -> None:
        """Print the JSON Schema of the workflow format (for editors)."""
        from wfe_core.cli.inspect_commands import schema_command

        _done(schema_command(type))

    @app.command()
    def graph(
        file: Annotated[
            Path, typer.Argument(help="The workflow file.", show_default=False, metavar="FILE")
        ],
        format: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot.")] = "mermaid",
        workflow: Annotated[
            str | None,
            typer.Option("--workflow", "-w", help="Which workflow, when the file has several."),
        ] = None,
    ) -> None:
        """Print a workflow's step graph as Mermaid or Graphviz DOT."""
        from wfe_core.cli.inspect_commands import graph_command

        _done(graph_command(file, format, workflow))

    @app.command()
    def gc() -> None:
        """Remove leftovers of crashed runs (containers, snapshots, leases) via each executor's
        garbage-collection hook."""
        from wfe_core.cli.gc_command import gc_command

        _done(gc_command())

    return app


__all__ = ["HELP", "build_app"]
