"""A daemon that cannot start is reported with its log, remembered, and cleaned up."""

from __future__ import annotations

import pytest

from tests.harness import Harness, HarnessUnavailable, require
from tests.harness.containerd import Containerd
from tests.harness.requirements import unavailable


def test_failed_start_reports_log_and_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    require("containerd")
    monkeypatch.setattr(Containerd, "argv", lambda self: ["containerd", "--no-such-flag"])
    harness = Harness.create()
    try:
        with pytest.raises(HarnessUnavailable, match=r"exited during startup[\s\S]*no-such-flag"):
            harness.ensure("containerd")
        with pytest.raises(HarnessUnavailable, match="exited during startup"):
            harness.ensure("containerd")  # remembered: no second attempt
    finally:
        harness.close()
    assert not harness.base.exists()


def test_unavailable_is_an_error_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(HarnessUnavailable, match="CI=true"):
        unavailable("containerd did not start")


def test_unavailable_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="containerd did not start"):
        unavailable("containerd did not start")
