"""`xlcl data validate` and `xlcl data export` on small MASSIVE directories."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from xlcl.cli import app

runner = CliRunner()

WAKE = {
    "id": "0",
    "locale": "en-US",
    "partition": "test",
    "intent": "alarm_set",
    "utt": "wake me up at five am this week",
    "annot_utt": "wake me up at [time : five am] [date : this week]",
}
QUIET = {
    "id": "1",
    "locale": "en-US",
    "partition": "train",
    "intent": "audio_volume_mute",
    "utt": "olly quiet",
    "annot_utt": "olly quiet",
}
JA = {
    "id": "0",
    "locale": "ja-JP",
    "partition": "test",
    "intent": "alarm_set",
    "utt": "今週は午前五時に起こして",
    "annot_utt": "[date : 今週] は [time : 午前五時] に起こして",
}


def _copies(row: dict[str, str], *partitions: str) -> list[str]:
    """``row`` once more per partition, with fresh ids."""
    return [
        json.dumps(dict(row, id=f"{row['id']}{partition}", partition=partition), ensure_ascii=False)
        for partition in partitions
    ]


def _source(tmp_path: Path, extra_en: list[str] | None = None) -> Path:
    lines = [json.dumps(WAKE), json.dumps(QUIET), *_copies(QUIET, "dev"), *(extra_en or [])]
    (tmp_path / "en-US.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ja = [json.dumps(JA, ensure_ascii=False), *_copies(JA, "train", "dev")]
    (tmp_path / "ja-JP.jsonl").write_text("\n".join(ja) + "\n", encoding="utf-8")
    return tmp_path


def _table(output: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def test_validate_reports_counts_and_exits_0(tmp_path: Path) -> None:
    source = _source(tmp_path)
    result = runner.invoke(app, ["data", "validate", str(source), "-l", "en-US", "-l", "ja-JP"])
    assert result.exit_code == 0, result.output
    assert _table(result.output) == [["en-US", "1", "1", "1"], ["ja-JP", "1", "1", "1"]]
    assert "2 slot types, 5 BIO labels, 2 intents" in result.output
    assert "all rows valid" in result.output


def test_validate_checks_the_locales_present_and_warns_once_about_the_rest(
    tmp_path: Path,
) -> None:
    source = _source(tmp_path)
    result = runner.invoke(app, ["data", "validate", str(source)])
    assert result.exit_code == 0, result.output
    assert _table(result.stdout) == [["en-US", "1", "1", "1"], ["ja-JP", "1", "1", "1"]]
    assert "all rows valid" in result.stdout
    [warning] = result.stderr.splitlines()
    assert warning.startswith("warning: the source lacks 50 of 52 locales, not checked: af-ZA ")
    assert "en-US" not in warning
    assert "ja-JP" not in warning


def test_validate_with_locale_insists_on_it(tmp_path: Path) -> None:
    source = _source(tmp_path)
    result = runner.invoke(app, ["data", "validate", str(source), "-l", "en-US", "-l", "de-DE"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {source}: no de-DE.jsonl in {source}\n"


def test_validate_reports_a_split_without_rows_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "en-US.jsonl").write_text(json.dumps(WAKE) + "\n\n   \n" + json.dumps(QUIET))
    result = runner.invoke(app, ["data", "validate", str(tmp_path), "-l", "en-US"])
    assert result.exit_code == 1, result.output
    assert _table(result.output) == [["en-US", "1", "0", "1"]]
    assert "en-US has no dev rows" in result.output
    assert "invalid row" not in result.output  # blank lines are not rows


def test_validate_lists_invalid_rows_and_exits_1(tmp_path: Path) -> None:
    bad = dict(QUIET, id="7", annot_utt="olly [time : quiet")
    source = _source(tmp_path, [json.dumps(bad)])
    result = runner.invoke(app, ["data", "validate", str(source), "--locale", "en-US"])
    assert result.exit_code == 1
    assert "1 invalid row(s):" in result.output
    assert f"{source / 'en-US.jsonl'}:4 id=7: unclosed bracket: [time : ... has no ']'" in (
        result.output
    )


def test_validate_unreadable_source_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "validate", str(tmp_path / "none"), "-l", "en-US"])
    assert result.exit_code == 2
    assert "error: MASSIVE source does not exist" in result.output
    result = runner.invoke(app, ["data", "validate", str(tmp_path), "-l", "xx-XX"])
    assert result.exit_code == 2
    assert "unknown locale 'xx-XX'" in result.output


def test_export_jsonl_to_stdout(tmp_path: Path) -> None:
    source = _source(tmp_path)
    args = ["data", "export", str(source), "-l", "en-US", "--split", "test", "--format", "jsonl"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {
            "id": "0",
            "locale": "en-US",
            "split": "test",
            "words": ["wake", "me", "up", "at", "five", "am", "this", "week"],
            "tags": ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"],
            "intent": "alarm_set",
        }
    ]


def test_export_conll_to_file(tmp_path: Path) -> None:
    source = _source(tmp_path)
    out = tmp_path / "ja.conll"
    args = ["data", "export", str(source), "-l", "ja-JP", "--split", "test", "--format", "conll"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == (
        "# id = 0\n今\tB-date\n週\tI-date\nは\tO\n午\tB-time\n前\tI-time\n五\tI-time\n"
        "時\tI-time\nに\tO\n起\tO\nこ\tO\nし\tO\nて\tO\n\n"
    )


def test_export_refuses_invalid_data(tmp_path: Path) -> None:
    source = _source(tmp_path, ["{not json"])
    args = ["data", "export", str(source), "-l", "en-US", "--split", "train", "--format", "jsonl"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"error: {source / 'en-US.jsonl'}:4: invalid JSON" in result.output


def test_export_skip_invalid_writes_valid_rows_and_lists_the_rest_on_stderr(
    tmp_path: Path,
) -> None:
    bad = dict(QUIET, id="7", annot_utt="olly [Time : quiet]")
    source = _source(tmp_path, ["{not json", json.dumps(bad)])
    args = ["data", "export", str(source), "-l", "en-US", "--split", "train", "--format", "jsonl"]
    result = runner.invoke(app, [*args, "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["1"]
    file = source / "en-US.jsonl"
    assert result.stderr.splitlines() == [
        f"skipped: {file}:4: invalid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        f"skipped: {file}:5 id=7: malformed bracket: no valid slot type in '[Time' "
        "(a slot type is [a-z][a-z0-9_]*)",
        "2 invalid row(s) skipped",
    ]


def test_export_of_a_split_without_rows_exits_1(tmp_path: Path) -> None:
    (tmp_path / "en-US.jsonl").write_text(json.dumps(WAKE) + "\n")
    args = ["data", "export", str(tmp_path), "-l", "en-US", "--split", "dev", "--format", "conll"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: en-US has no dev rows\n"


def test_validate_names_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "en-US.jsonl").write_bytes(json.dumps(WAKE).encode("utf-16"))
    result = runner.invoke(app, ["data", "validate", str(tmp_path), "-l", "en-US"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {tmp_path / 'en-US.jsonl'}: starts with a UTF-16 (little-endian) byte order mark; "
        "MASSIVE files are UTF-8 without one\n"
    )
