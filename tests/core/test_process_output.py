"""Tests for wfe_core.process_output: caps, ##wfe lines across chunks, $WFE_OUTPUT parsing."""

from __future__ import annotations

from pathlib import Path

from wfe_core import process_output as po
from wfe_core.process_output import OutputCapture, parse_output_file, process_outputs


def test_text_and_tail() -> None:
    cap = OutputCapture()
    cap.feed("stdout", "a\nb\n")
    cap.feed("stdout", "c\n")
    cap.feed("stderr", "e1\ne2\ne3\n")
    assert cap.text("stdout") == "a\nb\nc\n"
    assert cap.tail("stderr", 2) == "e2\ne3"
    assert cap.truncated("stdout") == 0


def test_cap_keeps_tail_and_notes_truncation() -> None:
    cap = OutputCapture(cap=10)
    cap.feed("stdout", "0123456789")
    cap.feed("stdout", "abcde")
    assert cap.truncated("stdout") == 5
    text = cap.text("stdout")
    assert text.endswith("56789abcde")
    assert text.startswith("[wfe: 5 bytes of stdout truncated]\n")


def test_cap_does_not_split_multibyte_characters() -> None:
    cap = OutputCapture(cap=5)
    cap.feed("stdout", "ééé")  # 6 bytes
    kept = cap.text("stdout").split("\n", 1)[1]
    assert kept == "éé"
    assert cap.truncated("stdout") == 2


def test_default_cap_is_one_mebibyte() -> None:
    assert po.STREAM_CAP_BYTES == 1024 * 1024
    cap = OutputCapture()
    for _ in range(300):
        cap.feed("stderr", "x" * 8192)
    assert cap.truncated("stderr") == 300 * 8192 - po.STREAM_CAP_BYTES


def test_output_lines_split_across_chunks() -> None:
    cap = OutputCapture()
    for chunk in ["hello\n##wf", "e[output dig", "est=sha256:abc]\nmore\n", "##wfe[output a=1]"]:
        cap.feed("stdout", chunk)
    assert cap.output_lines == {"digest": "sha256:abc", "a": "1"}


def test_output_lines_rules() -> None:
    cap = OutputCapture()
    cap.feed(
        "stdout",
        "##wfe[output  k = v=w]]\r\n"  # key trimmed, value raw (with '=' and ']')
        "  ##wfe[output indented=1]\n"  # must start the line
        "##wfe[output noclose=1\n"
        "##wfe[output bad key=1]\n"
        "##wfe[output exit_code=0]\n"  # reserved
        "##wfe[output k=last]\n",
    )
    cap.feed("stderr", "##wfe[output fromstderr=1]\n")
    assert cap.output_lines == {"k": "last"}


def test_output_lines_survive_stream_truncation() -> None:
    cap = OutputCapture(cap=16)
    cap.feed("stdout", "##wfe[output early=yes]\n")
    cap.feed("stdout", "x" * 100 + "\n")
    assert cap.output_lines == {"early": "yes"}


def test_overlong_partial_line_is_dropped() -> None:
    cap = OutputCapture(cap=32)
    cap.feed("stdout", "##wfe[output k=" + "v" * 100)
    cap.feed("stdout", "]\n")
    assert cap.output_lines == {}


def test_parse_output_file(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_text(
        "# comment\n\nname=value=with=equals\n  spaced = x\nnoequals\n=novalue\n"
        "multi<<EOF\nline 1\nline 2\nEOF\nafter=1\nstdout=forged\n"
    )
    assert parse_output_file(path) == {
        "name": "value=with=equals",
        "spaced": " x",
        "multi": "line 1\nline 2",
        "after": "1",
    }
    assert parse_output_file(tmp_path / "missing") == {}
    assert parse_output_file(None) == {}


def test_parse_output_file_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "out"
    with path.open("w") as handle:
        handle.write("first=1\n")
        handle.write(("x" * 1000 + "\n") * 2000)
        handle.write("late=1\n")
    assert parse_output_file(path) == {"first": "1"}


def test_process_outputs_precedence(tmp_path: Path) -> None:
    cap = OutputCapture()
    cap.feed("stdout", "##wfe[output a=line]\n##wfe[output b=line]\n")
    cap.feed("stderr", "oops\n")
    path = tmp_path / "out"
    path.write_text("b=file\nexit_code=7\n")
    outputs = process_outputs(cap, 3, path)
    assert outputs == {
        "exit_code": 3,
        "stdout": "##wfe[output a=line]\n##wfe[output b=line]\n",
        "stderr": "oops\n",
        "a": "line",
        "b": "file",
    }
    assert list(outputs)[:3] == ["exit_code", "stdout", "stderr"]


def test_unterminated_last_output_line_is_held_to_the_outputs_cap() -> None:
    cap = po.OutputCapture()
    big = "v" * (po.OUTPUTS_CAP_BYTES - 10)
    cap.feed("stdout", f"##wfe[output big={big}]\n")
    cap.feed("stdout", "##wfe[output late=" + "w" * 100 + "]")  # no newline: the process ended
    assert set(cap.output_lines) == {"big"}
    cap.feed("stdout", "\n##wfe[output ok=1]")
    assert set(cap.output_lines) == {"big", "ok"}
