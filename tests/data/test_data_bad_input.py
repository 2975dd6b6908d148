"""Bad input the fuzzing found or the rules name, pinned with the exact error."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pytest

from xlcl.data import DataError, InvalidRow, load_massive

Rows = Mapping[str, Sequence[Mapping[str, object] | str]]
Writer = Callable[[Rows], Path]
GoodRows = dict[str, list[Mapping[str, object] | str]]
MakeRow = Callable[..., dict[str, object]]
_WriteMode = Literal["w", "w:gz", "w:bz2", "w:xz"]


def _error(source: Path, locale: str = "en-US") -> DataError:
    with pytest.raises(DataError) as caught:
        load_massive(source, [locale])
    return caught.value


def _write(folder: Path, data: bytes) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "en-US.jsonl").write_bytes(data)
    return folder


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"id": ' + "7" * 5000 + "}", "invalid JSON: Exceeds the limit (4300 digits)"),
        ("[" * 100_000, "invalid JSON: maximum recursion depth exceeded"),
        ('{"id": "1"', "invalid JSON: Expecting ',' delimiter"),
    ],
)
def test_json_that_python_refuses_is_invalid_json(
    tmp_path: Path, good_rows: GoodRows, line: str, problem: str
) -> None:
    text = json.dumps(good_rows["en-US"][0]) + "\n" + line + "\n"
    error = _error(_write(tmp_path / "m", text.encode()))
    assert (error.line, error.id) == (2, None)
    assert error.problem.startswith(problem)


def test_a_lone_surrogate_is_not_unicode_and_its_id_still_prints(
    write_dir: Writer, make_row: MakeRow
) -> None:
    row = make_row("a\ud800", "en-US", "train", "alarm_set", "olly \udc00", "olly \udc00")
    error = _error(write_dir({"en-US": [json.dumps(row)]}))
    assert error.id == "a\\ud800"
    assert error.problem == "field 'id' is not valid Unicode (lone surrogate): 'a\\ud800'"
    row["id"] = "1"
    assert _error(write_dir({"en-US": [json.dumps(row)]})).problem == (
        "field 'utt' is not valid Unicode (lone surrogate): 'olly \\udc00'"
    )


def test_an_id_with_whitespace_is_refused(write_dir: Writer, make_row: MakeRow) -> None:
    row = make_row("1\n# id = 2", "en-US", "train", "alarm_set", "olly", "olly")
    assert _error(write_dir({"en-US": [row]})).problem == "id contains whitespace: '1\\n# id = 2'"


def test_a_huge_field_keeps_the_message_short(write_dir: Writer, make_row: MakeRow) -> None:
    word = "x" * 1_000_000
    row = make_row("1", "en-US", "train", "alarm_set", word, f"{word}]")
    problem = _error(write_dir({"en-US": [row]})).problem
    assert problem == f"malformed bracket: ']' without '[' in '{'x' * 56}... (1000003 chars)"
    row.update(utt="a", annot_utt="a", intent=list(range(100_000)))
    assert _error(write_dir({"en-US": [row]})).problem == (
        "field 'intent' is not a string: "
        "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16... (688890 chars)"
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            b"\xef\xbb\xbf{}\n",
            "starts with a UTF-8 byte order mark; MASSIVE files are UTF-8 without one",
        ),
        (b'{"a": 1}\n{\x00"\x00', "not UTF-8 text: NUL byte on line 2 (UTF-16?)"),
        (
            b'{"a": 1}\n\n{"utt": "caf\xe9"}\n',
            "not UTF-8: byte 0xe9 on line 3 (invalid continuation byte)",
        ),
        ("{}\n".encode("utf-16-be"), "not UTF-8 text: NUL byte on line 1 (UTF-16?)"),
    ],
)
def test_a_file_in_another_encoding_is_refused_as_a_whole(
    tmp_path: Path, data: bytes, problem: str
) -> None:
    folder = _write(tmp_path / "m", data)
    for skip_invalid in (False, True):
        with pytest.raises(DataError) as caught:
            load_massive(folder, ["en-US"], skip_invalid=skip_invalid)
        error = caught.value
        assert (error.file, error.line, error.problem) == (
            str(folder / "en-US.jsonl"),
            None,
            problem,
        )


def test_blank_lines_are_skipped_and_crlf_is_accepted(
    tmp_path: Path, good_rows: GoodRows, make_row: MakeRow
) -> None:
    rows = [json.dumps(row) for row in good_rows["en-US"]]
    bad = json.dumps(make_row("9", "en-US", "train", "alarm_set", "a", "[ : a]"))
    text = f"\r\n{rows[0]}\r\n \t\r\n\u3000\n{rows[1]}\r\n{bad}\r\n{rows[2]}"
    folder = _write(tmp_path / "m", text.encode())
    data = load_massive(folder, ["en-US"], skip_invalid=True)
    assert [len(data.utterances("en-US", split)) for split in ("train", "dev", "test")] == [1, 1, 1]
    assert data.quarantine == [
        InvalidRow(
            str(folder / "en-US.jsonl"),
            6,
            "9",
            "malformed bracket: no valid slot type in '[' (a slot type is [a-z][a-z0-9_]*)",
        )
    ]


def test_empty_splits_are_listed(write_dir: Writer, good_rows: GoodRows) -> None:
    data = load_massive(write_dir(good_rows), ["en-US", "ja-JP"])
    assert data.empty_splits == [("ja-JP", "dev")]


def _archive_bytes(members: Sequence[tuple[str, bytes]], mode: _WriteMode) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_corrupt_gzip_checksum_is_caught(
    tmp_path: Path, write_archive: Writer, good_rows: GoodRows
) -> None:
    # the member data decompresses cleanly; only gzip's CRC-32 in the trailer tells
    corrupt = bytearray(write_archive(good_rows).read_bytes())
    corrupt[-8] ^= 1
    path = tmp_path / "corrupt.tar.gz"
    path.write_bytes(bytes(corrupt))
    error = _error(path)
    assert error.file == str(path)
    stored = int.from_bytes(corrupt[-8:-4], "little")
    assert (
        error.problem
        == f"cannot read the archive: CRC check failed 0x{stored:x} != 0x{stored ^ 1:x}"
    )


def test_a_cut_gzip_header_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08garbage")  # tarfile's own gzip reader raised TypeError here
    error = _error(path)
    assert (error.file, error.problem.startswith("cannot read the archive: ")) == (str(path), True)


def test_two_members_for_one_locale_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.tar.gz"
    members = [("1.1/data/en-US.jsonl", b"{}\n"), ("1.0/data/en-US.jsonl", b"{}\n")]
    path.write_bytes(_archive_bytes(members, "w:gz"))
    assert _error(path).problem == (
        "two members for en-US: 1.1/data/en-US.jsonl and 1.0/data/en-US.jsonl"
    )


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz"])
def test_other_tar_compressions_are_read(
    tmp_path: Path, good_rows: GoodRows, mode: _WriteMode
) -> None:
    text = "".join(json.dumps(row) + "\n" for row in good_rows["en-US"])
    path = tmp_path / "massive.tar"
    path.write_bytes(_archive_bytes([("1.1/data/en-US.jsonl", text.encode())], mode))
    assert [u.id for u in load_massive(path, ["en-US"]).utterances("en-US", "test")] == ["0"]
