"""load_massive on every kind of source, with small files written by the tests."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from xlcl.data import DataError, InvalidRow, Utterance, load_massive
from xlcl.data.download import OFFICIAL_URL

Rows = Mapping[str, Sequence[Mapping[str, object] | str]]
Writer = Callable[[Rows], Path]
GoodRows = dict[str, list[Mapping[str, object] | str]]

WAKE = Utterance(
    id="0",
    locale="en-US",
    split="test",
    intent="alarm_set",
    words=("wake", "me", "up", "at", "five", "am", "this", "week"),
    tags=("O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"),
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_directory_source(write_dir: Writer, good_rows: GoodRows) -> None:
    folder = write_dir(good_rows)
    data = load_massive(folder, ["ja-JP", "en-US"])
    assert data.locales == ("ja-JP", "en-US")
    assert data.utterances("en-US", "test") == [WAKE]
    assert [u.id for u in data.utterances("en-US", "train")] == ["1"]
    assert [u.id for u in data.utterances("en-US", "dev")] == ["2"]
    assert data.utterances("ja-JP", "dev") == []
    assert data.utterances("ja-JP", "train")[0].words[:4] == ("b.", "b.", "c.", "の")
    listing = (
        f"en-US.jsonl {_sha(folder / 'en-US.jsonl')}\nja-JP.jsonl {_sha(folder / 'ja-JP.jsonl')}\n"
    )
    assert data.checksum == hashlib.sha256(listing.encode()).hexdigest()
    assert data.quarantine == []


def test_directory_holding_the_release_layout(tmp_path: Path, good_rows: GoodRows) -> None:
    folder = tmp_path / "1.1" / "data"
    folder.mkdir(parents=True)
    (folder / "en-US.jsonl").write_text(json.dumps(good_rows["en-US"][0]) + "\n")
    assert load_massive(tmp_path, ["en-US"]).utterances("en-US", "test") == [WAKE]


def test_archive_source_reads_only_the_requested_members(
    write_archive: Writer, good_rows: GoodRows
) -> None:
    archive = write_archive({**good_rows, "de-DE": ["{broken"]})
    data = load_massive(archive, ["en-US"])
    assert data.utterances("en-US", "test") == [WAKE]
    assert data.checksum == _sha(archive)
    assert data.source == str(archive)


def test_environment_variable_names_the_source(
    write_archive: Writer, good_rows: GoodRows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XLCL_MASSIVE", str(write_archive(good_rows)))
    assert load_massive(None, ["ja-JP"]).utterances("ja-JP", "test")[0].tags == (
        "B-date",
        "I-date",
        "O",
        "B-time",
        "I-time",
        "I-time",
        "I-time",
        "O",
        "O",
        "O",
        "O",
        "O",
    )


def test_missing_source_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XLCL_MASSIVE", raising=False)
    with pytest.raises(DataError, match="set XLCL_MASSIVE"):
        load_massive(None, ["en-US"])


def test_source_errors_name_the_file(
    tmp_path: Path, write_archive: Writer, write_dir: Writer, good_rows: GoodRows
) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_massive(tmp_path / "nowhere.tar.gz", ["en-US"])
    archive = write_archive(good_rows)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="cannot read the archive") as caught:
        load_massive(truncated, ["ja-JP"])
    assert caught.value.file == str(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("not an archive\n")
    with pytest.raises(DataError, match="cannot read the archive"):
        load_massive(text, ["en-US"])
    with pytest.raises(
        DataError, match=r"archive has no <version>/data/<locale>\.jsonl for: de-DE"
    ):
        load_massive(archive, ["en-US", "de-DE"])
    with pytest.raises(DataError, match=r"no de-DE\.jsonl in"):
        load_massive(write_dir(good_rows), ["de-DE"])


def test_missing_ok_loads_the_locales_a_partial_source_has(
    tmp_path: Path, write_archive: Writer, write_dir: Writer, good_rows: GoodRows
) -> None:
    wanted = ["de-DE", "ja-JP", "en-US"]
    for source in (write_archive(good_rows), write_dir(good_rows)):
        data = load_massive(source, wanted, missing_ok=True)
        assert data.locales == ("ja-JP", "en-US")  # the order requested
        assert data.utterances("en-US", "test") == [WAKE]
    folder = write_dir(good_rows)
    listing = (
        f"en-US.jsonl {_sha(folder / 'en-US.jsonl')}\nja-JP.jsonl {_sha(folder / 'ja-JP.jsonl')}\n"
    )
    assert load_massive(folder, wanted, missing_ok=True).checksum == (
        hashlib.sha256(listing.encode()).hexdigest()
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no <locale>\.jsonl of MASSIVE in"):
        load_massive(empty, wanted, missing_ok=True)


def test_unknown_locale_suggests_close_names(write_dir: Writer, good_rows: GoodRows) -> None:
    with pytest.raises(DataError) as caught:
        load_massive(write_dir(good_rows), ["en-us"])
    assert caught.value.problem == "unknown locale 'en-us'; did you mean en-US? (MASSIVE has 52)"


def test_invalid_row_raises_with_file_line_and_id(
    write_dir: Writer, good_rows: GoodRows, make_row: Callable[..., dict[str, object]]
) -> None:
    bad = make_row("9", "en-US", "train", "alarm_set", "wake me", "wake [time : me")
    folder = write_dir({"en-US": [*good_rows["en-US"], bad]})
    with pytest.raises(DataError) as caught:
        load_massive(folder, ["en-US"])
    error = caught.value
    assert (error.file, error.line, error.id) == (str(folder / "en-US.jsonl"), 4, "9")
    assert error.problem == "unclosed bracket: [time : ... has no ']'"
    assert (
        str(error) == f"{folder / 'en-US.jsonl'}:4 id=9: unclosed bracket: [time : ... has no ']'"
    )


def test_skip_invalid_quarantines_bad_rows_and_keeps_good_ones(
    write_archive: Writer, good_rows: GoodRows, make_row: Callable[..., dict[str, object]]
) -> None:
    rows = [
        good_rows["en-US"][0],
        "",
        '{"id": "5", "locale": "en-US"',
        make_row("0", "en-US", "train", "alarm_set", "again", "again"),
        make_row("6", "en-US", "dev", "alarm_set", "stop now", "stop [time : now] please"),
        good_rows["en-US"][1],
    ]
    data = load_massive(write_archive({"en-US": rows}), ["en-US"], skip_invalid=True)
    file = "amazon-massive-dataset-1.1.tar.gz:1.1/data/en-US.jsonl"
    assert data.quarantine == [
        InvalidRow(
            file,
            3,
            None,
            "invalid JSON: Expecting ',' delimiter: line 1 column 30 (char 29)",
        ),
        InvalidRow(file, 4, "0", f"duplicate id (first at {file}:1)"),
        InvalidRow(
            file,
            5,
            "6",
            "word mismatch: utt has 2 words, annot_utt 3; word 3 is '<end>' in utt but "
            "'please' in annot_utt",
        ),
    ]
    assert [
        u.id for split in ("train", "dev", "test") for u in data.utterances("en-US", split)
    ] == [
        "1",
        "0",
    ]


def test_utterances_of_a_locale_not_loaded(write_dir: Writer, good_rows: GoodRows) -> None:
    data = load_massive(write_dir(good_rows), ["en-US"])
    with pytest.raises(DataError, match="locale 'ja-JP' was not loaded"):
        data.utterances("ja-JP", "train")


def test_url_source_is_downloaded_once_and_checked(
    tmp_path: Path,
    write_archive: Writer,
    good_rows: GoodRows,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XLCL_CACHE", str(tmp_path / "cache"))
    archive = write_archive(good_rows)
    sha = _sha(archive)
    url = archive.as_uri()
    data = load_massive(url, ["en-US"], sha256=sha)
    cached = tmp_path / "cache" / "massive" / sha / archive.name
    assert cached.read_bytes() == archive.read_bytes()
    assert data.checksum == sha
    archive.unlink()  # the second load must come from the cache
    assert load_massive(url, ["en-US"], sha256=sha).utterances("en-US", "test") == [WAKE]


def test_url_with_wrong_or_unknown_checksum_is_refused(
    tmp_path: Path, write_archive: Writer, good_rows: GoodRows, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XLCL_CACHE", str(tmp_path / "cache"))
    url = write_archive(good_rows).as_uri()
    with pytest.raises(DataError, match="sha256 mismatch"):
        load_massive(url, ["en-US"], sha256="0" * 64)
    assert not (
        tmp_path / "cache" / "massive" / ("0" * 64) / "amazon-massive-dataset-1.1.tar.gz"
    ).exists()
    with pytest.raises(DataError, match="no known sha256"):
        load_massive(url, ["en-US"])


def test_official_url_is_checked_against_its_known_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a corrupt file already in the cache: no network, and the known sha256 rejects it
    monkeypatch.setenv("XLCL_CACHE", str(tmp_path))
    known = "4cba5faa11c71437928e17cb1b9b3d8b8e727e7ea363a3a9a8045e19c0491577"
    cached = tmp_path / "massive" / known / "amazon-massive-dataset-1.1.tar.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupt")
    with pytest.raises(DataError, match=f"sha256 mismatch for {OFFICIAL_URL}: expected {known}"):
        load_massive(OFFICIAL_URL, ["en-US"])
    assert not cached.exists()


class _ClassLabel:
    def __init__(self, names: list[str]) -> None:
        self.names = names

    def int2str(self, value: int) -> str:
        return self.names[value]


class _Split(list[dict[str, Any]]):
    features: ClassVar[dict[str, object]] = {
        "id": object(),
        "locale": object(),
        "partition": object(),
        "intent": _ClassLabel(["alarm_query", "alarm_set"]),
        "utt": object(),
        "annot_utt": object(),
    }


def test_hub_source_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def load_dataset(repo: str, **kwargs: Any) -> dict[str, _Split]:
        calls.append((repo, kwargs))
        return {
            "test": _Split(
                [
                    {
                        "id": "0",
                        "locale": "en-US",
                        "partition": "test",
                        "intent": 1,
                        "utt": "wake me up at five am this week",
                        "annot_utt": "wake me up at [time : five am] [date : this week]",
                    }
                ]
            )
        }

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    data = load_massive("hf://AmazonScience/massive", ["en-US"])
    assert calls == [
        ("AmazonScience/massive", {"data_dir": "en-US", "revision": "refs/convert/parquet"})
    ]
    assert data.utterances("en-US", "test") == [WAKE]
    assert len(data.checksum) == 64


def test_hub_source_without_datasets_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"needs the `datasets` package \(pip install datasets\)"):
        load_massive("hf://AmazonScience/massive", ["en-US"])
