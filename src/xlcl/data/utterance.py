"""One MASSIVE utterance and its validation from a raw row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast, get_args

from xlcl.data.annotation import parse_annotation, split_words
from xlcl.data.errors import DataError, excerpt

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
REQUIRED_FIELDS = ("id", "locale", "partition", "intent", "utt", "annot_utt")


@dataclass(frozen=True, slots=True)
class Utterance:
    """A MASSIVE utterance as words with BIO slot tags (``O``, ``B-time``, ``I-time``, ...)."""

    id: str
    locale: str
    split: Split
    intent: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


def utterance_from_row(row: object, locale: str) -> Utterance:
    """Validate one decoded JSON row of ``locale``'s file; raises `DataError` naming the problem."""
    if not isinstance(row, Mapping):
        raise DataError(f"row is not a JSON object but {type(row).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in row]
    if missing:
        raise DataError(f"missing field(s): {', '.join(missing)}")
    for name in REQUIRED_FIELDS:
        value = row[name]
        if not isinstance(value, str):
            raise DataError(f"field {name!r} is not a string: {excerpt(value)}")
        if not _is_unicode(value):
            raise DataError(
                f"field {name!r} is not valid Unicode (lone surrogate): {excerpt(value)}"
            )
    fields = cast(Mapping[str, str], row)
    if not fields["id"]:
        raise DataError("empty id")
    if fields["id"].split() != [fields["id"]]:
        raise DataError(f"id contains whitespace: {excerpt(fields['id'])}")
    if fields["locale"] != locale:
        raise DataError(
            f"locale field {excerpt(fields['locale'])} does not match the file's {locale!r}"
        )
    if fields["partition"] not in SPLITS:
        raise DataError(
            f"unknown partition {excerpt(fields['partition'])} "
            f"(expected one of {', '.join(SPLITS)})"
        )
    if not fields["intent"]:
        raise DataError("empty intent")
    utt_words = split_words(fields["utt"], locale)
    if not utt_words:
        raise DataError("empty utterance")
    words, tags = parse_annotation(fields["annot_utt"], locale)
    if words != utt_words:
        raise DataError(_mismatch(utt_words, words))
    return Utterance(
        id=fields["id"],
        locale=locale,
        split=cast(Split, fields["partition"]),
        intent=fields["intent"],
        words=tuple(words),
        tags=tuple(tags),
    )


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _mismatch(utt_words: list[str], annot_words: list[str]) -> str:
    at = next(
        (i for i, (a, b) in enumerate(zip(utt_words, annot_words, strict=False)) if a != b),
        min(len(utt_words), len(annot_words)),
    )
    first = (
        utt_words[at] if at < len(utt_words) else "<end>",
        annot_words[at] if at < len(annot_words) else "<end>",
    )
    return (
        f"word mismatch: utt has {len(utt_words)} words, annot_utt {len(annot_words)}; "
        f"word {at + 1} is {excerpt(first[0])} in utt but {excerpt(first[1])} in annot_utt"
    )
