"""``type: checksum``: compute a file's digest, and fail the step if it is not the expected one.

An example of everything an executor package provides: an attrs config class (structured from
the step's ``config:`` by the core, unknown keys rejected), a validator that reports problems at
compile time with the line of the offending key, a step body, and the plugin object that the
``wfe.executors`` entry point names.

The body's ``run`` is a plain function: hashing is CPU and file work, so the core runs it in a
worker thread and the event loop stays free for other steps.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import attrs

from wfe_core import (
    Diagnostic,
    ExecutionResult,
    ExecutorPlugin,
    StepBody,
    StepContext,
    StepFailed,
    ValidationContext,
    has_reference,
)
from wfe_core.contracts import JSONValue

ALGORITHMS = sorted(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake_"))
_HEX = re.compile(r"[0-9a-f]+\Z")


@attrs.frozen
class ChecksumConfig:
    """``config:`` of a checksum step.

    ``path``: the file to hash, relative to the workflow file's directory.
    ``algorithm``: any of :data:`ALGORITHMS` (default sha256).
    ``expect``: if given, the step fails unless the hex digest equals it.
    """

    path: str
    algorithm: str = "sha256"
    expect: str | None = None


def validate(config: ChecksumConfig, ctx: ValidationContext) -> Iterable[Diagnostic]:
    """Checks made by ``wfe validate`` (and before every run), each pointing at its key."""
    if config.algorithm not in ALGORITHMS:
        close = difflib.get_close_matches(config.algorithm, ALGORITHMS, n=1)
        yield ctx.error(
            "CHK001",
            f"unknown algorithm {config.algorithm!r}",
            "algorithm",
            hint=f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(ALGORITHMS)}",
        )
    if not has_reference(config.path):
        path = Path(config.path)
        path = path if path.is_absolute() else ctx.base_dir / path
        if not path.is_file():
            yield ctx.error("CHK002", f"no such file: {str(path)!r}", "path")
    if config.expect is not None and not has_reference(config.expect):
        if not _HEX.match(config.expect):
            yield ctx.error("CHK003", "'expect' must be a lowercase hex digest", "expect")
        elif config.algorithm in ALGORITHMS:
            size = hashlib.new(config.algorithm).digest_size * 2
            if len(config.expect) != size:
                yield ctx.error(
                    "CHK003",
                    f"a {config.algorithm} digest has {size} hex digits, "
                    f"'expect' has {len(config.expect)}",
                    "expect",
                )


class ChecksumStep(StepBody):
    """One execution of a checksum step (a fresh instance per attempt)."""

    def __init__(self, config: ChecksumConfig) -> None:
        self.config = config

    def run(self, ctx: StepContext) -> ExecutionResult:
        config = self.config
        path = ctx.resolve_path(config.path)
        digest = hashlib.new(config.algorithm)
        size = 0
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise StepFailed(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
        outputs: dict[str, JSONValue] = {
            "digest": digest.hexdigest(),
            "algorithm": config.algorithm,
            "size": size,
        }
        ctx.log("stdout", f"{digest.hexdigest()}  {path}\n")
        if config.expect is not None and config.expect != digest.hexdigest():
            raise StepFailed(
                f"{config.algorithm} of {path.name} is {digest.hexdigest()}, "
                f"expected {config.expect}",
                outputs=outputs,
            )
        return ExecutionResult(outputs=outputs)


plugin = ExecutorPlugin(
    name="checksum",
    config_type=ChecksumConfig,
    create=ChecksumStep,
    validators=(validate,),
    description="Compute a file's digest (sha256 by default) and optionally check it",
)

__all__ = ["ALGORITHMS", "ChecksumConfig", "ChecksumStep", "plugin", "validate"]
