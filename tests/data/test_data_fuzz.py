"""Bad data, fuzzed with hypothesis: every input is a `DataError` or a correctly tagged result.

Annotations are checked against an independent regex reading of the ``[type : words]``
grammar; rows, files and archives against the rule that nothing but `DataError` ever leaves
`load_massive`, that ``skip_invalid`` quarantines exactly the rows a strict load would refuse,
and that a cut or corrupted archive never yields other rows than the whole one. The settings are
derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlcl.data import DataError, MassiveData, load_massive
from xlcl.data.annotation import CHAR_SPLIT_LOCALES, parse_annotation, split_words
from xlcl.data.utterance import REQUIRED_FIELDS, utterance_from_row

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LOCALES = ("en-US", "ja-JP", "zh-TW", "th-TH", "ar-SA")

# --- an independent reading of the annotation grammar ------------------------------------

_SLOT = re.compile(r"\[([a-z][a-z0-9_]*) : ((?:[^\s\[\]]+ )*[^\s\[\]]+) ?\]")
_WORD = re.compile(r"[^\s\[\]]+")


def _pieces(chunk: str, locale: str) -> list[str]:
    if locale in CHAR_SPLIT_LOCALES and not chunk.isascii():
        return list(chunk)
    return [chunk]


def oracle(annot: str, locale: str) -> tuple[list[str], list[str]] | None:
    """Words and tags if ``annot`` is well formed, else None."""
    text = " ".join(annot.split())
    words: list[str] = []
    tags: list[str] = []
    at = 0
    while at < len(text):
        slot = _SLOT.match(text, at)
        match = slot or _WORD.match(text, at)
        if match is None or (match.end() < len(text) and text[match.end()] != " "):
            return None
        if slot is None:
            pieces = _pieces(match.group(), locale)
            words += pieces
            tags += ["O"] * len(pieces)
        else:
            pieces = [p for chunk in slot[2].split() for p in _pieces(chunk, locale)]
            words += pieces
            tags += [f"B-{slot[1]}"] + [f"I-{slot[1]}"] * (len(pieces) - 1)
        at = match.end() + 1
    return words, tags


# --- strategies ----------------------------------------------------------------------------

_SAMPLE_CHARS = [*"ab:.'-_éüßж今週ニュース五時ปลุกفي\u0301😀"]  # \u0301: a combining accent
word_chars = st.one_of(
    st.sampled_from(_SAMPLE_CHARS),
    st.characters(exclude_categories=["Cs"]).filter(lambda c: not c.isspace() and c not in "[]"),
)
words = st.text(word_chars, min_size=1, max_size=6)
slot_types = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
segments = st.lists(
    st.one_of(
        st.tuples(st.none(), words),
        st.tuples(slot_types, st.lists(words, min_size=1, max_size=4)),
    ),
    min_size=1,
    max_size=8,
)
_SPECIALS = ["[", "]", ":", " ", " : ", "\t", "\u3000", "\n", "a", "今", "[x : ", "]]", ""]
edits = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace"]),
        st.integers(0, 10**6),
        st.sampled_from(_SPECIALS),
    ),
    min_size=1,
    max_size=4,
)
locales = st.sampled_from(LOCALES)


def render(parts: Sequence[tuple[str | None, object]]) -> tuple[str, str]:
    """``(utt, annot_utt)`` of segments ``(None, word)`` and ``(type, [word, ...])``."""
    utt: list[str] = []
    annot: list[str] = []
    for slot, content in parts:
        if slot is None:
            assert isinstance(content, str)
            utt.append(content)
            annot.append(content)
        else:
            assert isinstance(content, list)
            utt += content
            annot.append(f"[{slot} : {' '.join(content)}]")
    return " ".join(utt), " ".join(annot)


def mutate(text: str, changes: Sequence[tuple[str, int, str]]) -> str:
    for kind, position, piece in changes:
        at = position % (len(text) + 1)
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + piece + text[at + 1 :]
    return text


def parsed(annot: str, locale: str) -> tuple[list[str], list[str]] | None:
    try:
        return parse_annotation(annot, locale)
    except DataError:
        return None


# --- annot_utt -----------------------------------------------------------------------------


@FUZZ
@given(segments, locales)
def test_valid_annotations_round_trip_exactly(
    parts: list[tuple[str | None, object]], locale: str
) -> None:
    utt, annot = render(parts)
    expected_words: list[str] = []
    expected_tags: list[str] = []
    for slot, content in parts:
        chunks = [content] if slot is None else content
        assert isinstance(chunks, list)
        pieces = [p for chunk in chunks for p in _pieces(chunk, locale)]
        expected_words += pieces
        if slot is None:
            expected_tags += ["O"] * len(pieces)
        else:
            expected_tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(pieces) - 1)
    assert parse_annotation(annot, locale) == (expected_words, expected_tags)
    assert split_words(utt, locale) == expected_words


@FUZZ
@given(segments, edits, locales)
def test_mutated_annotations_are_an_error_or_tagged_as_written(
    parts: list[tuple[str | None, object]], changes: list[tuple[str, int, str]], locale: str
) -> None:
    annot = mutate(render(parts)[1], changes)
    assert parsed(annot, locale) == oracle(annot, locale)


@FUZZ
@given(st.text(st.sampled_from(list("[]: \tax_今é\u3000")), max_size=30), locales)
def test_bracket_soup_is_an_error_or_tagged_as_written(annot: str, locale: str) -> None:
    assert parsed(annot, locale) == oracle(annot, locale)


# --- rows ----------------------------------------------------------------------------------

odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from(["", " ", "train", "dev", "test", "validation", "en-US", "\ud800", "a b"]),
)


@st.composite
def rows(draw: st.DrawFn, locale: str) -> object:
    """A MASSIVE row, mostly valid, with some fields dropped, replaced or mutated."""
    utt, annot = render(draw(segments))
    row: dict[str, object] = {
        "id": str(draw(st.integers(0, 20))),
        "locale": locale,
        "partition": draw(st.sampled_from(["train", "dev", "test"])),
        "scenario": "alarm",
        "intent": "alarm_set",
        "utt": utt,
        "annot_utt": mutate(annot, draw(edits)) if draw(st.booleans()) else annot,
    }
    for name in draw(st.sets(st.sampled_from(REQUIRED_FIELDS), max_size=2)):
        if draw(st.booleans()):
            del row[name]
        else:
            row[name] = draw(odd_values)
    return draw(st.one_of(st.just(row), odd_values)) if draw(st.integers(0, 9)) == 0 else row


@FUZZ
@given(st.data(), locales)
def test_a_row_is_an_error_or_an_utterance_true_to_its_annotation(
    data: st.DataObject, locale: str
) -> None:
    row = data.draw(rows(locale))
    try:
        utterance = utterance_from_row(row, locale)
    except DataError as exc:
        assert exc.problem
        return
    assert isinstance(row, dict)
    assert (utterance.id, utterance.locale, utterance.split, utterance.intent) == (
        row["id"],
        row["locale"],
        row["partition"],
        row["intent"],
    )
    assert oracle(row["annot_utt"], locale) == (list(utterance.words), list(utterance.tags))
    assert list(utterance.words) == split_words(row["utt"], locale)


# --- files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


jsonl_lines = st.one_of(
    st.tuples(rows("en-US"), st.booleans()).map(
        lambda pair: json.dumps(pair[0], ensure_ascii=pair[1])
    ),
    st.text(max_size=20).filter(lambda text: "\n" not in text),
    st.sampled_from(["", "   ", "\r", "\t", "{}", "[]", "null", '"row"', "{", '{"id": 1']),
    st.just("[" * 100_000),
    st.just('{"id": ' + "7" * 5000 + "}"),
)
"""One line of a JSONL file: a (bad) row, garbage, blank, huge or deeply nested."""


_ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-16-le", "cut"]


def _encode(text: str, encoding: str, cut: int) -> bytes:
    if encoding == "cut":  # a multi-byte character cut in half
        data = text.encode("utf-8", errors="surrogatepass")
        return data[:cut] + "é".encode()[:1] + data[cut:]
    # a lone surrogate becomes bytes that are not UTF-8
    return text.encode(encoding, errors="surrogatepass" if "utf" in encoding else "replace")


def _load(path: Path, skip_invalid: bool) -> MassiveData | DataError:
    try:
        return load_massive(path, ["en-US"], skip_invalid=skip_invalid)
    except DataError as exc:
        return exc


@FUZZ
@given(st.lists(jsonl_lines, max_size=8), st.sampled_from(_ENCODINGS), st.integers(0, 500))
def test_a_file_is_an_error_or_rows_plus_quarantine(
    workdir: Path, lines: list[str], encoding: str, cut: int
) -> None:
    text = "\n".join(lines) + "\n"
    file = workdir / "en-US.jsonl"
    file.write_bytes(_encode(text, encoding, cut))
    strict = _load(workdir, skip_invalid=False)
    lenient = _load(workdir, skip_invalid=True)
    if isinstance(lenient, DataError):  # the file as a whole: encoding
        assert (lenient.file, lenient.line) == (str(file), None)
        assert isinstance(strict, DataError)
        assert str(strict) == str(lenient)
        return
    decoded = file.read_bytes().decode("utf-8")
    numbers = [number for number, line in enumerate(decoded.split("\n"), 1) if line.strip()]
    quarantined = [row.line for row in lenient.quarantine]
    assert quarantined == sorted(set(quarantined))
    assert set(quarantined) <= set(numbers)
    kept = sum(len(lenient.utterances("en-US", split)) for split in ("train", "dev", "test"))
    assert kept + len(quarantined) == len(numbers)
    if lenient.quarantine:
        assert isinstance(strict, DataError)
        first = lenient.quarantine[0]
        assert (strict.file, strict.line, strict.id, strict.problem) == (
            first.file,
            first.line,
            first.id,
            first.problem,
        )
        assert all(row.file == str(file) and row.problem for row in lenient.quarantine)
    else:
        assert isinstance(strict, MassiveData)
        assert strict.by_locale == lenient.by_locale


# --- archives --------------------------------------------------------------------------------


def _sample_rows(locale: str, count: int) -> str:
    words = ["wake", "me", "今週", "五時", "bbc", "ニュース", "up", "at", "five"]
    lines = []
    for number in range(count):
        digest = hashlib.sha256(f"{locale}{number}".encode()).digest()
        picked = [words[byte % len(words)] for byte in digest[: 2 + digest[0] % 5]]
        annot = " ".join(picked[:-1]) + f" [time : {picked[-1]}]"
        row = {
            "id": str(number),
            "locale": locale,
            "partition": ("train", "dev", "test")[number % 3],
            "intent": "alarm_set",
            "utt": " ".join(picked),
            "annot_utt": annot,
        }
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    return "".join(lines)


@cache
def _archive(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in [
            ("1.1/LICENSE", "CC BY 4.0\n"),
            ("1.1/data/en-US.jsonl", _sample_rows("en-US", 150)),
            ("1.1/data/ja-JP.jsonl", _sample_rows("ja-JP", 150)),
            ("1.1/data/de-DE.jsonl", _sample_rows("de-DE", 50)),
        ]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    plain = buffer.getvalue()
    return gzip.compress(plain, mtime=0) if compressed else plain


_WANTED = ["en-US", "ja-JP"]


@cache
def _whole(compressed: bool, directory: Path) -> MassiveData:
    path = directory / f"whole-{compressed}.tar.gz"
    path.write_bytes(_archive(compressed))
    return load_massive(path, _WANTED)


@FUZZ
@given(st.booleans(), st.floats(0, 1, exclude_max=True))
def test_a_cut_archive_is_an_error_or_the_same_rows(
    workdir: Path, compressed: bool, fraction: float
) -> None:
    whole = _archive(compressed)
    path = workdir / "cut.tar.gz"
    path.write_bytes(whole[: int(len(whole) * fraction)])
    try:
        data = load_massive(path, _WANTED)
    except DataError as exc:
        assert exc.file == str(path)
        return
    assert data.by_locale == _whole(compressed, workdir).by_locale


@FUZZ
@given(st.integers(0, 10**6), st.integers(0, 7))
def test_a_flipped_bit_is_an_error_or_the_same_rows(workdir: Path, position: int, bit: int) -> None:
    corrupt = bytearray(_archive(True))
    corrupt[position % len(corrupt)] ^= 1 << bit
    path = workdir / "flipped.tar.gz"
    path.write_bytes(bytes(corrupt))
    try:
        data = load_massive(path, _WANTED)
    except DataError as exc:
        assert exc.file == str(path)
        return
    assert data.by_locale == _whole(True, workdir).by_locale


_MAGIC = [b"", b"\x1f\x8b\x08", b"BZh91AY&SY", b"\xfd7zXZ\x00", b"\x5d\x00\x00\x80\x00", b"ustar"]


@FUZZ
@given(st.sampled_from(_MAGIC), st.binary(max_size=600))
def test_random_bytes_are_not_an_archive(workdir: Path, magic: bytes, tail: bytes) -> None:
    path = workdir / "noise.tar.gz"
    path.write_bytes(magic + tail)
    with pytest.raises(DataError) as caught:
        load_massive(path, ["en-US"])
    assert caught.value.file == str(path)
