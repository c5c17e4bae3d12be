"""Printing compiler diagnostics and user errors the one way the CLI does it: on stderr, one
``file:line:col: error[CODE]: message`` line per problem, errors and warnings alike."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from wfe_core.contracts import Diagnostic


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        sys.stderr.write(f"{diagnostic}\n")
    sys.stderr.flush()


def print_error(message: str) -> None:
    """A user error that is not tied to a place in a file."""
    sys.stderr.write(f"wfe: error: {message}\n")
    sys.stderr.flush()


__all__ = ["print_diagnostics", "print_error"]
