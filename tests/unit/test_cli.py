"""The command line validates files as submit does, with exit codes scripts can rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from batchbox.cli import main

GOOD = b'{"id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}\n'
BAD = b'{"id": "b", "request": {"contents": [{"role": "system", "parts": [{"text": "x"}]}]}}\n'


def test_valid_file_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(GOOD)
    assert main(["validate", str(path)]) == 0
    assert "ok.jsonl" in capsys.readouterr().out


def test_invalid_file_exits_one_and_names_line_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD + BAD)
    assert main(["validate", "--json", str(path)]) == 1
    [report] = orjson.loads(capsys.readouterr().out)
    [error] = report["errors"]
    assert (error["line"], error["path"]) == (2, "request.contents[0].role")


def test_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "missing.jsonl")]) == 2


def test_console_script_runs(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(GOOD)
    done = subprocess.run(
        [sys.executable, "-m", "batchbox.cli", "validate", str(path)], capture_output=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["validate", "--help"], ["submit", "--help"]])
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: batchbox")
    assert "``" not in out
    assert ":class:" not in out
    assert "\x1b[" not in out  # no colour codes when the output is not a terminal


def test_help_lists_every_command_with_a_one_line_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in (
        "validate",
        "convert",
        "submit",
        "jobs",
        "status",
        "results",
        "cancel",
        "redrive",
        "watch",
        "init",
    ):
        [line] = [x for x in out.splitlines() if x.strip().startswith(command + " ")]
        assert not line.rstrip().endswith("..."), line
    assert "Exit status" in out


def test_warnings_pass_unless_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "warn.jsonl"
    path.write_bytes(b'{"request": {"contents": [{"parts": [{"text": "hi"}]}]}}\n')
    assert main(["validate", "--json", str(path)]) == 0
    [report] = orjson.loads(capsys.readouterr().out)
    assert (report["ok"], report["warning_count"]) == (True, 1)
    assert report["warnings"][0]["code"] == "role_omitted"
    assert main(["validate", "--strict", str(path)]) == 1
    out = capsys.readouterr().out
    assert "Strict mode" in out
    assert "role_omitted" not in out  # codes are for machines; people read the message
    assert "an error in strict mode" in out


OPENAI = (
    b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", '
    b'"body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}}\n'
)


def test_validate_reads_openai_lines_with_format_openai(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "openai.jsonl"
    path.write_bytes(OPENAI)
    assert main(["validate", "--json", str(path)]) == 1
    [report] = orjson.loads(capsys.readouterr().out)
    assert report["errors"][0]["code"] == "openai_line"
    assert main(["validate", "--format", "openai", "--json", str(path)]) == 0
    [report] = orjson.loads(capsys.readouterr().out)
    assert (report["ok"], report["id_field"], report["input_format"]) == (
        True,
        "custom_id",
        "openai",
    )


def test_convert_writes_gemini_lines_that_keep_custom_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(OPENAI)
    assert main(["convert", "--from", "openai", str(source), str(target)]) == 0
    assert "Wrote 1 Gemini request line(s)" in capsys.readouterr().out
    [converted] = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert converted == {
        "custom_id": "r1",
        "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    }
    assert main(["validate", str(target)]) == 0


def test_convert_writes_nothing_when_a_line_cannot_be_converted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(
        OPENAI
        + OPENAI.replace(b'"r1"', b'"r2"').replace(b'"gpt-4o"', b'"gpt-4o", "logit_bias": {"1": 2}')
    )
    assert main(["convert", "--from", "openai", str(source), str(target)]) == 1
    out = capsys.readouterr().out
    assert "line 2, body.logit_bias" in out
    assert "Nothing written" in out
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [source]
