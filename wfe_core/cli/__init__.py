"""The ``wfe`` command line. ``main()`` is the console script's entry point.

Startup is kept fast: this module imports nothing heavy, :mod:`.app` imports only Typer, and each
command imports what it needs (compiler, runner, rich, plugins) when it runs. ``wfe --help``
therefore loads no plugin and never imports grpc.

Exit codes: 0 success, 1 a step failed, 2 invalid input (diagnostics printed), 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI and exit with its code; user errors never show a traceback."""
    sys.exit(run_cli(argv))


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (for tests and embedding)."""
    import click

    from wfe_core.cli.app import build_app

    app = build_app()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="wfe", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return EXIT_INVALID if exc.exit_code == 2 else int(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    return int(code) if isinstance(code, int) else EXIT_OK


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXIT_OK", "main", "run_cli"]
