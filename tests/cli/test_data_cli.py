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


def _source(tmp_path: Path, extra_en: list[str] | None = None) -> Path:
    lines = [json.dumps(WAKE), json.dumps(QUIET), *(extra_en or [])]
    (tmp_path / "en-US.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "ja-JP.jsonl").write_text(json.dumps(JA, ensure_ascii=False) + "\n")
    return tmp_path


def test_validate_reports_counts_and_exits_0(tmp_path: Path) -> None:
    source = _source(tmp_path)
    result = runner.invoke(app, ["data", "validate", str(source), "-l", "en-US", "-l", "ja-JP"])
    assert result.exit_code == 0, result.output
    cells = [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in result.output.splitlines()
        if line.startswith("│")
    ]
    assert cells == [["en-US", "1", "0", "1"], ["ja-JP", "0", "0", "1"]]
    assert "2 slot types, 5 BIO labels, 2 intents" in result.output
    assert "all rows valid" in result.output


def test_validate_lists_invalid_rows_and_exits_1(tmp_path: Path) -> None:
    bad = dict(QUIET, id="7", annot_utt="olly [time : quiet")
    source = _source(tmp_path, [json.dumps(bad)])
    result = runner.invoke(app, ["data", "validate", str(source), "--locale", "en-US"])
    assert result.exit_code == 1
    assert "1 invalid row(s):" in result.output
    assert f"{source / 'en-US.jsonl'}:3 id=7: unclosed bracket: [time : ... has no ']'" in (
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
    assert f"error: {source / 'en-US.jsonl'}:3: invalid JSON" in result.output
