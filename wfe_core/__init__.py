"""wfe: a workflow engine whose executors are separate, entry-point-registered packages.

The names exported here are the whole contract between the core and executors; see
``docs/plugin-authors.md``. Importing this package is cheap and never imports grpc.
"""

from wfe_core.contracts import (
    Diagnostic,
    ExecutionResult,
    ExecutorPlugin,
    JSONValue,
    ProgressEvent,
    Severity,
    StepBody,
    StepContext,
    StepFailed,
    ValidationContext,
    Validator,
    has_reference,
)

__version__ = "0.1.0"

__all__ = [
    "Diagnostic",
    "ExecutionResult",
    "ExecutorPlugin",
    "JSONValue",
    "ProgressEvent",
    "Severity",
    "StepBody",
    "StepContext",
    "StepFailed",
    "ValidationContext",
    "Validator",
    "__version__",
    "has_reference",
]
