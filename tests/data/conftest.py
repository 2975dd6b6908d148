"""Fixtures for the data tests: small MASSIVE files written per test.

The real archive comes from the ``massive_archive`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

Rows = Mapping[str, Sequence[Mapping[str, object] | str]]


def _row(
    id: str, locale: str, partition: str, intent: str, utt: str, annot_utt: str
) -> dict[str, object]:
    """A MASSIVE row with the required fields (plus ``scenario``, as in the release)."""
    return {
        "id": id,
        "locale": locale,
        "partition": partition,
        "scenario": intent.split("_")[0],
        "intent": intent,
        "utt": utt,
        "annot_utt": annot_utt,
    }


_GOOD: dict[str, list[dict[str, object]]] = {
    "en-US": [
        _row(
            "0",
            "en-US",
            "test",
            "alarm_set",
            "wake me up at five am this week",
            "wake me up at [time : five am] [date : this week]",
        ),
        _row("1", "en-US", "train", "audio_volume_mute", "olly quiet", "olly quiet"),
        _row(
            "2",
            "en-US",
            "dev",
            "alarm_set",
            "set an alarm for two hours from now",
            "set an alarm for [time : two hours from now]",
        ),
    ],
    "ja-JP": [
        _row(
            "0",
            "ja-JP",
            "test",
            "alarm_set",
            "今週は午前五時に起こして",
            "[date : 今週] は [time : 午前五時] に起こして",
        ),
        _row(
            "104",
            "ja-JP",
            "train",
            "news_query",
            "b. b. c. のニュースを教えて",
            "[media_type : b. b. c.] のニュースを教えて",
        ),
    ],
}


@pytest.fixture
def make_row() -> Callable[..., dict[str, object]]:
    """``make_row(id, locale, partition, intent, utt, annot_utt)`` builds one row."""
    return _row


@pytest.fixture
def good_rows() -> dict[str, list[Mapping[str, object] | str]]:
    """Valid rows of en-US (3: test, train, dev) and ja-JP (2: test, train), a fresh copy."""
    return {locale: [dict(item) for item in items] for locale, items in _GOOD.items()}


def _jsonl(rows: Sequence[Mapping[str, object] | str]) -> str:
    """JSONL text; a str row is written as is (to make broken lines)."""
    return "".join(
        (item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)) + "\n"
        for item in rows
    )


@pytest.fixture
def write_dir(tmp_path: Path) -> Callable[[Rows], Path]:
    """Write ``{locale: rows}`` as ``<locale>.jsonl`` files into a fresh directory."""

    def write(rows: Rows) -> Path:
        folder = tmp_path / "massive"
        folder.mkdir(exist_ok=True)
        for locale, items in rows.items():
            (folder / f"{locale}.jsonl").write_text(_jsonl(items), encoding="utf-8")
        return folder

    return write


@pytest.fixture
def write_archive(tmp_path: Path) -> Callable[[Rows], Path]:
    """Write ``{locale: rows}`` as a release-style ``.tar.gz`` (``1.1/data/<locale>.jsonl``)."""

    def write(rows: Rows) -> Path:
        path = tmp_path / "amazon-massive-dataset-1.1.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            license_bytes = b"CC BY 4.0\n"
            info = tarfile.TarInfo("1.1/LICENSE")
            info.size = len(license_bytes)
            archive.addfile(info, io.BytesIO(license_bytes))
            for locale, items in rows.items():
                data = _jsonl(items).encode()
                info = tarfile.TarInfo(f"1.1/data/{locale}.jsonl")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return path

    return write
