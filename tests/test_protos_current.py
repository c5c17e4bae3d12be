"""The checked-in gRPC stubs must be exactly what ``nox -s protos`` generates from our protos."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from protogen import check_protos_current


def test_generated_stubs_are_current() -> None:
    pytest.importorskip("grpc_tools", reason="pip install grpcio-tools (nox -s tests installs it)")
    stale = check_protos_current()
    assert not stale, "stale generated stubs, run `nox -s protos`:\n" + "\n".join(stale)
