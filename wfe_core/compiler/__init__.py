"""The workflow compiler: YAML text in, checked :class:`~wfe_core.model.Workflow` values out.

It never raises for bad input. Every problem becomes a :class:`~wfe_core.contracts.Diagnostic`
with the file, line and column it concerns, and all of them are collected and returned together
(file order), so a user fixes a file in one round. The stages:

1. :mod:`.yaml_loader`: bytes to a position-carrying tree, with caps against hostile input;
2. :mod:`.workflows` and :mod:`.step_syntax`: the file's structure, keys and step names;
3. :mod:`.step_build`: durations, retry, ``when`` (:mod:`.conditions`), references
   (:mod:`.references`), each step's config structured and validated (:mod:`.config_check`).

Diagnostic codes are in :mod:`.codes`, caps in :mod:`.limits`.
"""

from __future__ import annotations

import gc
from pathlib import Path

import attrs

from wfe_core.compiler import codes
from wfe_core.compiler.config import ConfigError, ConfigProblem, default_converter, structure_config
from wfe_core.compiler.limits import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from wfe_core.compiler.report import Reporter
from wfe_core.compiler.suggest import did_you_mean
from wfe_core.compiler.workflows import compile_document
from wfe_core.compiler.yaml_loader import decode, load_tree
from wfe_core.contracts import Diagnostic, Severity, workflow_base_dir
from wfe_core.model import Workflow
from wfe_core.plugins import PluginRegistry


class CompileError(Exception):
    """Raised by :meth:`CompileResult.select` (and by callers that want an exception)."""

    def __init__(self, *diagnostics: Diagnostic) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


@attrs.frozen
class CompileResult:
    """What compiling one file gave: its workflows (none if any error) and all diagnostics."""

    workflows: tuple[Workflow, ...]
    diagnostics: tuple[Diagnostic, ...]
    file: str = "<workflow>"

    @property
    def ok(self) -> bool:
        """True when no diagnostic is an error (warnings are fine)."""
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)

    def select(self, workflow_id: str | None = None) -> Workflow:
        """The file's only workflow, or the one called ``workflow_id``.

        Raises :class:`CompileError` when compilation failed, when the file has several
        workflows and none was chosen, or when no workflow has that id.
        """
        if not self.ok:
            raise CompileError(*self.errors)
        ids = [w.id for w in self.workflows]
        if workflow_id is None:
            if len(self.workflows) == 1:
                return self.workflows[0]
            raise CompileError(
                Diagnostic(
                    codes.SELECT,
                    f"the file defines {len(ids)} workflows ({', '.join(ids)}); choose one",
                    self.file,
                    hint="pass --workflow ID",
                )
            )
        for workflow in self.workflows:
            if workflow.id == workflow_id:
                return workflow
        raise CompileError(
            Diagnostic(
                codes.SELECT,
                f"no workflow {workflow_id!r} in the file; it defines: {', '.join(ids)}",
                self.file,
                hint=did_you_mean(workflow_id, ids) or "pass one of those ids to --workflow",
            )
        )


def _result(report: Reporter, workflows: list[Workflow]) -> CompileResult:
    ok = not report.has_errors
    return CompileResult(tuple(workflows) if ok else (), report.sorted(), report.file)


def compile_text(
    text: str | bytes, *, file: str, registry: PluginRegistry, base_dir: Path
) -> CompileResult:
    """Compile workflow text; ``file`` names it in diagnostics, ``base_dir`` is what relative
    config paths resolve against (validators receive it)."""
    report = Reporter(file)
    workflows: list[Workflow] = []
    collecting = gc.isenabled()
    gc.disable()  # the tree is acyclic and capped; cyclic GC passes only slow the build down
    try:
        source = decode(text, report) if isinstance(text, bytes) else text
        if source is not None:
            root = load_tree(source, report)
            if root is not None:
                workflows = compile_document(root, report, registry, source, base_dir)
    except RecursionError:
        report.error(codes.TOO_DEEP, "file is nested too deeply to compile", None)
    except Exception as exc:  # a compiler bug must still not become a traceback for users
        report.error(
            codes.INTERNAL,
            f"internal compiler error: {type(exc).__name__}: {exc}",
            None,
            hint="please report this as a bug in wfe",
        )
    finally:
        if collecting:
            gc.enable()
    return _result(report, workflows)


def compile_file(path: str | Path, registry: PluginRegistry) -> CompileResult:
    """Compile the workflow file at ``path`` (unreadable or oversized files give a diagnostic)."""
    path = Path(path)
    file = str(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        report = Reporter(file)
        reason = exc.strerror or str(exc)
        report.error(codes.UNREADABLE, f"cannot read the workflow file: {reason}", None)
        return _result(report, [])
    return compile_text(data, file=file, registry=registry, base_dir=workflow_base_dir(path))


__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "CompileError",
    "CompileResult",
    "ConfigError",
    "ConfigProblem",
    "compile_file",
    "compile_text",
    "default_converter",
    "structure_config",
]
