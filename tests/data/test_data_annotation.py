"""annot_utt -> words + BIO tags, checked on hand-written MASSIVE examples."""

from __future__ import annotations

import pytest

from xlcl.data import DataError
from xlcl.data.annotation import parse_annotation, split_words


def test_english_example_from_the_paper() -> None:
    words, tags = parse_annotation("wake me up at [time : five am] [date : this week]", "en-US")
    assert words == ["wake", "me", "up", "at", "five", "am", "this", "week"]
    assert tags == ["O", "O", "O", "O", "B-time", "I-time", "B-date", "I-date"]


def test_slot_in_the_middle_and_unannotated_utterance() -> None:
    assert parse_annotation("wake me up at [time : nine am] on [date : friday]", "en-US") == (
        ["wake", "me", "up", "at", "nine", "am", "on", "friday"],
        ["O", "O", "O", "O", "B-time", "I-time", "O", "B-date"],
    )
    assert parse_annotation("olly quiet", "en-US") == (["olly", "quiet"], ["O", "O"])


def test_japanese_splits_characters_but_keeps_ascii_chunks_whole() -> None:
    words, tags = parse_annotation("[media_type : b. b. c.] のニュースを教えて", "ja-JP")
    assert words == ["b.", "b.", "c.", "の", "ニ", "ュ", "ー", "ス", "を", "教", "え", "て"]
    # the slot closes at "c.]": the official script would carry media_type on
    assert tags == ["B-media_type", "I-media_type", "I-media_type"] + ["O"] * 9


def test_chinese_slot_characters_get_b_then_i() -> None:
    words, tags = parse_annotation("[date : 这周] [time : 五点] 叫我起床", "zh-CN")
    assert words == ["这", "周", "五", "点", "叫", "我", "起", "床"]
    assert tags == ["B-date", "I-date", "B-time", "I-time", "O", "O", "O", "O"]


def test_thai_is_not_character_split() -> None:
    assert split_words("ปลุก ฉัน", "th-TH") == ["ปลุก", "ฉัน"]
    assert split_words("这周 bbc 五点", "zh-TW") == ["这", "周", "bbc", "五", "点"]


@pytest.mark.parametrize(
    ("annot", "problem"),
    [
        ("wake me [time : five [date : am]]", "nested bracket: '[date' opened inside [time : ...]"),
        ("wake me [time five am]", "malformed bracket: expected ' : ' after '[time'"),
        (
            "wake me [ : five am]",
            "malformed bracket: no valid slot type in '[' (a slot type is [a-z][a-z0-9_]*)",
        ),
        (
            "wake me [Time : five am]",
            "malformed bracket: no valid slot type in '[Time' (a slot type is [a-z][a-z0-9_]*)",
        ),
        (
            "wake me [ti:me : five am]",
            "malformed bracket: no valid slot type in '[ti:me' (a slot type is [a-z][a-z0-9_]*)",
        ),
        ("wake me [foo bar : five am]", "malformed bracket: expected ' : ' after '[foo'"),
        (
            "wake me [time: five am]",
            "malformed bracket: no valid slot type in '[time:' (a slot type is [a-z][a-z0-9_]*)",
        ),
        ("wake me [time : ] am", "empty bracket: [time : ] has no words"),
        ("wake me [time : ]", "empty bracket: [time : ] has no words"),
        ("wake me [time : five am", "unclosed bracket: [time : ... has no ']'"),
        ("wake me five am]", "malformed bracket: ']' without '[' in 'am]'"),
        ("wake me [time : fi]ve am]", "malformed bracket: stray bracket in 'fi]ve'"),
        ("wake [time", "malformed bracket: expected ' : ' after '[time'"),
    ],
)
def test_malformed_brackets_name_the_problem(annot: str, problem: str) -> None:
    with pytest.raises(DataError) as caught:
        parse_annotation(annot, "en-US")
    assert caught.value.problem == problem
