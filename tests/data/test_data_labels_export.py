"""Label vocabularies and the JSONL / CoNLL export."""

from __future__ import annotations

import json

from xlcl.data import Utterance, intent_names, slot_label_names
from xlcl.data.export import export_lines

WAKE = Utterance(
    id="0",
    locale="en-US",
    split="test",
    intent="alarm_set",
    words=("wake", "me", "up", "at", "five", "am", "this", "week"),
    tags=("O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"),
)
NEWS = Utterance(
    id="104",
    locale="ja-JP",
    split="train",
    intent="news_query",
    words=("b.", "b.", "c.", "の"),
    tags=("B-media_type", "I-media_type", "I-media_type", "O"),
)


def test_slot_labels_are_o_then_b_i_per_sorted_type() -> None:
    assert slot_label_names([NEWS, WAKE]) == [
        "O",
        "B-date",
        "I-date",
        "B-media_type",
        "I-media_type",
        "B-time",
        "I-time",
    ]
    assert slot_label_names([]) == ["O"]
    assert intent_names([WAKE, NEWS, WAKE]) == ["alarm_set", "news_query"]


def test_jsonl_export() -> None:
    (line,) = export_lines([NEWS], "jsonl")
    assert json.loads(line) == {
        "id": "104",
        "locale": "ja-JP",
        "split": "train",
        "words": ["b.", "b.", "c.", "の"],
        "tags": ["B-media_type", "I-media_type", "I-media_type", "O"],
        "intent": "news_query",
    }
    assert "の" in line


def test_conll_export() -> None:
    assert list(export_lines([NEWS, NEWS], "conll")) == 2 * [
        "# id = 104",
        "b.\tB-media_type",
        "b.\tI-media_type",
        "c.\tI-media_type",
        "の\tO",
        "",
    ]
