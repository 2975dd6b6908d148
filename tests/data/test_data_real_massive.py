"""The real MASSIVE 1.1 archive converts cleanly (skipped where the archive is absent)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from xlcl.data import LOCALES, SPLITS, intent_names, load_massive, slot_label_names


@pytest.mark.integration
def test_all_859092_rows_convert(massive_archive: Path) -> None:
    data = load_massive(massive_archive, list(LOCALES))
    assert data.quarantine == []
    for locale in LOCALES:
        counts = [len(data.utterances(locale, split)) for split in SPLITS]
        assert counts == [11_514, 2_033, 2_974], locale
    assert len(slot_label_names(data)) == 111
    assert len(intent_names(data)) == 60


@pytest.mark.integration
def test_three_locales_read_fast_and_match_hand_checked_rows(massive_archive: Path) -> None:
    start = time.perf_counter()
    data = load_massive(massive_archive, ["en-US", "ja-JP", "zh-TW"])
    assert time.perf_counter() - start < 10
    wake = data.utterances("en-US", "test")[0]
    assert (wake.id, wake.words, wake.tags) == (
        "0",
        ("wake", "me", "up", "at", "five", "am", "this", "week"),
        ("O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"),
    )
    news = next(u for u in data.utterances("ja-JP", "train") if u.id == "104")
    assert news.words[:4] == ("b.", "b.", "c.", "の")
    assert news.tags[:4] == ("B-media_type", "I-media_type", "I-media_type", "O")
    first = data.utterances("zh-TW", "test")[0]
    assert "".join(first.words) == "這週早上五點叫醒我"
    assert first.tags[:6] == ("B-date", "I-date", "B-time", "I-time", "I-time", "I-time")
