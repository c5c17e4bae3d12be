"""Wire-level details that the daemon is strict about: packets, request fields, progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import timestamp_pb2
from wfe_buildkit._pb import control_pb2, fsutil_pb2
from wfe_buildkit.dockerfile import DockerfileBuild, instructions, locator, solve_opt
from wfe_buildkit.errors import BuildFailed, InvalidRequest
from wfe_buildkit.progress import LogEvent, ProgressTracker, VertexEvent, render_plain
from wfe_buildkit.solve import Export, SolveOpt, build_request, clean_message


def test_end_of_stat_marker_has_no_stat_field() -> None:
    marker = fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_STAT)
    assert marker.SerializeToString() == b""
    empty_stat = fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_STAT, stat=fsutil_pb2.Stat())
    assert empty_stat.SerializeToString() == b"\x12\x00"  # what the daemon rejects


def test_packet_field_numbers() -> None:
    packet = fsutil_pb2.Packet(type=fsutil_pb2.Packet.PACKET_DATA, ID=3, data=b"x")
    assert packet.SerializeToString() == b"\x08\x02\x18\x03\x22\x01x"
    stat = fsutil_pb2.Stat(path="a", mode=1 << 31, size=5, modTime=7, linkname="b")
    assert stat.SerializeToString() == b"\x0a\x01a\x10\x80\x80\x80\x80\x08\x28\x05\x30\x07\x3a\x01b"


def test_exporter_in_old_and_new_fields() -> None:
    opt = SolveOpt(exports=[Export.moby(["a:1", "b:2"])])
    request = build_request(opt, "ref1", "sess1")
    assert request.ExporterDeprecated == "moby"
    assert dict(request.ExporterAttrsDeprecated) == {"name": "a:1,b:2"}
    assert [(e.Type, dict(e.Attrs)) for e in request.Exporters] == [("moby", {"name": "a:1,b:2"})]
    assert request.Session == "sess1" and request.Ref == "ref1"
    wire = request.SerializeToString()
    decoded = control_pb2.SolveRequest.FromString(wire)
    assert decoded.ExporterDeprecated == "moby"


def test_local_exporter_needs_destination() -> None:
    with pytest.raises(InvalidRequest, match="needs a destination"):
        build_request(SolveOpt(exports=[Export("local")]), "r", "s")


def test_dockerfile_frontend_attrs(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    dockerfile = tmp_path / "elsewhere" / "Build.df"
    dockerfile.parent.mkdir()
    dockerfile.write_text("FROM scratch\n")
    build = DockerfileBuild(
        context=tmp_path / "ctx",
        dockerfile=dockerfile,
        target="final",
        build_args={"B": "2", "A": "1"},
        labels={"org.x": "y"},
        platforms=("linux/amd64",),
        no_cache=True,
        network="host",
        cache_from=("reg/cache:1",),
    )
    opt = solve_opt(build, [Export.tar(tmp_path / "out.tar")])
    assert opt.frontend_attrs["filename"] == "Build.df"
    assert opt.frontend_attrs["target"] == "final"
    assert opt.frontend_attrs["build-arg:A"] == "1"
    assert opt.frontend_attrs["label:org.x"] == "y"
    assert opt.frontend_attrs["platform"] == "linux/amd64"
    assert opt.frontend_attrs["no-cache"] == ""
    assert opt.frontend_attrs["force-network-mode"] == "host"
    assert list(opt.entitlements) == ["network.host"]
    assert opt.local_dirs == {"context": tmp_path / "ctx", "dockerfile": dockerfile.parent}
    request = build_request(opt, "r", "s")
    assert json.loads(request.FrontendAttrs["cache-imports"]) == [
        {"Type": "registry", "Attrs": {"ref": "reg/cache:1"}}
    ]
    assert [(e.Type, dict(e.Attrs)) for e in request.Cache.Imports] == [
        ("registry", {"ref": "reg/cache:1"})
    ]


def test_missing_context_and_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="context directory does not exist"):
        solve_opt(DockerfileBuild(context=tmp_path / "nope"), [])
    with pytest.raises(InvalidRequest, match="Dockerfile not found"):
        solve_opt(DockerfileBuild(context=tmp_path), [])


def test_locate_instruction_line(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "# syntax comment\nFROM busybox AS base\n\nCOPY a /a\nRUN echo one \\\n  && exit 1\n"
    )
    assert instructions(dockerfile.read_text())[2] == (5, "RUN echo one && exit 1")
    locate = locator(dockerfile)
    assert locate("[base 3/3] RUN echo one && exit 1") == "Dockerfile:5"
    assert locate("[2/3] COPY a /a") == "Dockerfile:4"
    assert locate("[internal] load metadata") is None


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def test_progress_tracker_merges_deltas() -> None:
    events: list[object] = []
    tracker = ProgressTracker(events.append)
    v = control_pb2.Vertex(digest="d1", name="[1/2] RUN x", started=_ts(10))
    tracker.feed(control_pb2.StatusResponse(vertexes=[v]))
    tracker.feed(control_pb2.StatusResponse(vertexes=[v]))  # repeated: no new event
    log = control_pb2.VertexLog(vertex="d1", stream=1, msg=b"hel")
    tracker.feed(control_pb2.StatusResponse(logs=[log]))
    tracker.feed(control_pb2.StatusResponse(logs=[control_pb2.VertexLog(vertex="d1", stream=1,
                                                                         msg=b"lo\nwor")]))
    done = control_pb2.Vertex(digest="d1", name="[1/2] RUN x", started=_ts(10),
                              completed=_ts(12), error="exit code: 1")
    tracker.feed(control_pb2.StatusResponse(vertexes=[done]))
    tracker.flush()
    kinds = [(type(e).__name__, getattr(e, "state", getattr(e, "line", ""))) for e in events]
    assert kinds == [
        ("VertexEvent", "started"),
        ("LogEvent", "hello"),
        ("VertexEvent", "failed"),
        ("LogEvent", "wor"),
    ]
    failed = tracker.failed_vertex()
    assert failed is not None and list(failed.tail) == ["hello", "wor"]
    assert render_plain(events[0]) == ("stderr", "#1 [1/2] RUN x")  # type: ignore[arg-type]
    assert render_plain(LogEvent("d1", 1, "stdout", "hi")) == ("stdout", "#1 hi")
    assert render_plain(VertexEvent("d", 2, "n", "cached")) == ("stderr", "#2 CACHED")


def test_error_rendering() -> None:
    assert clean_message("rpc error: code = Unknown desc = boom") == "boom"
    error = BuildFailed(
        "executor failed running [/bin/sh -c exit 1]: exit code: 1",
        vertex="[2/2] RUN exit 1",
        location="Dockerfile:2",
        logs=["last line"],
        exit_code=1,
    )
    text = str(error)
    assert text.startswith("build failed at [2/2] RUN exit 1 (Dockerfile:2): exit code 1")
    assert "  | last line" in text and "daemon: executor failed" in text
