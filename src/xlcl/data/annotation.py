"""MASSIVE's inline slot annotation (``annot_utt``) to words and BIO tags.

Follows the official conversion (``scripts/create_hf_dataset.py`` in alexa/massive): words are
the whitespace tokens of the utterance; in ja-JP, zh-CN and zh-TW each whitespace chunk is split
into characters unless it is pure ASCII (code-switched Latin words stay whole). Slots are written
``[type : words]``; words outside a slot are MASSIVE's ``Other``, here the BIO outside tag ``O``.
A slot type is lowercase ASCII letters, digits and ``_``, starting with a letter (all 55 types
of MASSIVE 1.1 are); the set of types is not closed, it comes from the data.

One deliberate difference: the official script does not close a slot whose last chunk is an
ASCII chunk ending in ``]`` in the character-split locales (e.g. ja-JP ``[media_type : b. b.
c.] のニュース``), so the following characters inherit the slot. Here ``]`` always closes.
"""

from __future__ import annotations

import re

from xlcl.data.errors import DataError, excerpt

CHAR_SPLIT_LOCALES = frozenset({"ja-JP", "zh-CN", "zh-TW"})
OUTSIDE = "O"
SLOT_TYPE = re.compile(r"[a-z][a-z0-9_]*")


def split_words(text: str, locale: str) -> list[str]:
    """The words of ``text`` as MASSIVE counts them in ``locale``."""
    chunks = text.split()
    if locale not in CHAR_SPLIT_LOCALES:
        return chunks
    return [piece for chunk in chunks for piece in _split_chunk(chunk)]


def _split_chunk(chunk: str) -> list[str]:
    return [chunk] if chunk.isascii() else list(chunk)


def parse_annotation(annot_utt: str, locale: str) -> tuple[list[str], list[str]]:
    """Words and BIO tags of an annotated utterance; raises `DataError` on a malformed bracket.

    >>> parse_annotation("wake me up at [time : five am] [date : this week]", "en-US")[1]
    ['O', 'O', 'O', 'O', 'B-time', 'I-time', 'B-date', 'I-date']
    """
    char_split = locale in CHAR_SPLIT_LOCALES
    words: list[str] = []
    tags: list[str] = []
    slot: str | None = None
    slot_words = 0
    chunks = annot_utt.split()
    i = 0
    while i < len(chunks):
        chunk = chunks[i]
        if chunk.startswith("["):
            if slot is not None:
                raise DataError(f"nested bracket: {excerpt(chunk)} opened inside [{slot} : ...]")
            slot = chunk[1:]
            if not SLOT_TYPE.fullmatch(slot):
                raise DataError(
                    f"malformed bracket: no valid slot type in {excerpt(chunk)} "
                    "(a slot type is [a-z][a-z0-9_]*)"
                )
            if i + 1 == len(chunks) or chunks[i + 1] != ":":
                raise DataError(f"malformed bracket: expected ' : ' after {excerpt(chunk)}")
            slot_words = 0
            i += 2
            continue
        closes = chunk.endswith("]")
        text = chunk[:-1] if closes else chunk
        if "[" in text or "]" in text:
            raise DataError(f"malformed bracket: stray bracket in {excerpt(chunk)}")
        if closes and slot is None:
            raise DataError(f"malformed bracket: ']' without '[' in {excerpt(chunk)}")
        pieces = (_split_chunk(text) if char_split else [text]) if text else []
        for piece in pieces:
            words.append(piece)
            if slot is None:
                tags.append(OUTSIDE)
            else:
                tags.append(("I-" if slot_words else "B-") + slot)
                slot_words += 1
        if closes:
            if not slot_words:
                raise DataError(f"empty bracket: [{slot} : ] has no words")
            slot = None
        i += 1
    if slot is not None:
        raise DataError(f"unclosed bracket: [{slot} : ... has no ']'")
    return words, tags
