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


def _kinds(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (for tests and embedding).

    Click's exceptions are recognised by class name: Typer may use the ``click`` package or its
    own vendored copy of it, depending on its version.
    """
    from wfe_core.cli.app import build_app

    app = build_app()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="wfe", standalone_mode=False)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        kinds = _kinds(exc)
        if "Exit" in kinds:
            return int(getattr(exc, "exit_code", 0))
        if "Abort" in kinds:
            sys.stderr.write("\ninterrupted\n")
            return EXIT_INTERRUPTED
        if "ClickException" in kinds:
            exc.show()  # type: ignore[attr-defined]
            return int(getattr(exc, "exit_code", EXIT_INVALID))  # usage errors are 2, as ours
        raise
    return int(code) if isinstance(code, int) else EXIT_OK


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXIT_OK", "main", "run_cli"]
