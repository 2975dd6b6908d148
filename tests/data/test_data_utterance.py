"""Row validation: each problem is named."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from xlcl.data import DataError, Utterance
from xlcl.data.utterance import utterance_from_row

MakeRow = Callable[..., dict[str, object]]


def test_valid_row_becomes_an_utterance(make_row: MakeRow) -> None:
    row = make_row(
        "7",
        "en-US",
        "train",
        "audio_volume_mute",
        "pause for ten seconds",
        "pause for [time : ten seconds]",
    )
    row["worker_id"] = "8"
    assert utterance_from_row(row, "en-US") == Utterance(
        id="7",
        locale="en-US",
        split="train",
        intent="audio_volume_mute",
        words=("pause", "for", "ten", "seconds"),
        tags=("O", "O", "B-time", "I-time"),
    )


def _problem(row: object, locale: str = "en-US") -> str:
    with pytest.raises(DataError) as caught:
        utterance_from_row(row, locale)
    return caught.value.problem


def test_missing_fields_are_listed(make_row: MakeRow) -> None:
    row = make_row("1", "en-US", "train", "x_y", "a b", "a b")
    del row["intent"], row["annot_utt"]
    assert _problem(row) == "missing field(s): intent, annot_utt"


def test_each_field_problem(make_row: MakeRow) -> None:
    def good() -> dict[str, object]:
        return make_row("1", "en-US", "train", "alarm_set", "a b", "a [time : b]")

    assert _problem(["not", "an", "object"]) == "row is not a JSON object but list"
    assert _problem({**good(), "id": 1}) == "field 'id' is not a string: 1"
    assert _problem({**good(), "id": ""}) == "empty id"
    assert _problem(good(), "de-DE") == "locale field 'en-US' does not match the file's 'de-DE'"
    assert _problem({**good(), "partition": "validation"}) == (
        "unknown partition 'validation' (expected one of train, dev, test)"
    )
    assert _problem({**good(), "intent": ""}) == "empty intent"
    assert _problem({**good(), "utt": "  ", "annot_utt": ""}) == "empty utterance"


def test_word_mismatch_shows_the_first_difference(make_row: MakeRow) -> None:
    row = make_row(
        "3", "en-US", "test", "alarm_set", "wake me at five", "wake me up at [time : five]"
    )
    assert _problem(row) == (
        "word mismatch: utt has 4 words, annot_utt 5; word 3 is 'at' in utt but 'up' in annot_utt"
    )
    shorter = make_row("4", "en-US", "test", "alarm_set", "wake me up", "wake me")
    assert _problem(shorter) == (
        "word mismatch: utt has 3 words, annot_utt 2; word 3 is 'up' in utt but '<end>' in "
        "annot_utt"
    )
