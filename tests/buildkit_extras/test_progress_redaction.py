"""Secret values are masked in the progress events the live display shows, as in log lines."""

from __future__ import annotations

from pathlib import Path

from wfe_buildkit.build_secrets import redact
from wfe_buildkit.executor import _emit_progress
from wfe_buildkit.progress import VertexEvent

from wfe_core.contracts import ProgressEvent, StepContext


def test_vertex_names_and_errors_are_redacted(tmp_path: Path) -> None:
    seen: list[ProgressEvent] = []
    ctx = StepContext(
        run_id="r", workflow_id="w", step_name="build", attempt=1, config=None, inputs={},
        outputs={}, workspace=tmp_path, base_dir=tmp_path, progress_sink=seen.append,
    )
    secret = "s3cr3t-value-123"
    event = VertexEvent(
        digest="sha256:1", number=3, name=f"[2/2] RUN echo {secret}", state="error",
        error=f"process 'echo {secret}' did not complete",
    )
    _emit_progress(ctx, event, lambda text: redact(text, [secret]))
    assert len(seen) == 1
    text = repr(seen[0].data)
    assert secret not in text
    assert "***" in text
