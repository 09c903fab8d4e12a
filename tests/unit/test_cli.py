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


@pytest.mark.parametrize("argv", [["--help"], ["validate", "--help"]])
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: batchbox")
    assert "``" not in out
    assert ":class:" not in out


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
