"""Raw rows of one locale as a source hands them over, before validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from xlcl.data.errors import DataError

RawRow = str | Mapping[str, object]
"""A row as read: the JSON text of a line, or an already decoded row (hub)."""

_BYTE_ORDER_MARKS = {
    b"\xef\xbb\xbf": "UTF-8",
    b"\xff\xfe": "UTF-16 (little-endian)",
    b"\xfe\xff": "UTF-16 (big-endian)",
}


@dataclass(frozen=True)
class LocaleRows:
    """The raw rows of one locale with their 1-based line (or row) numbers in ``file``."""

    locale: str
    file: str
    rows: Sequence[tuple[int, RawRow]]


def numbered_lines(text: str) -> list[tuple[int, RawRow]]:
    """The non-blank lines of a JSONL text with their 1-based line numbers."""
    return [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]


def jsonl_rows(data: bytes, file: str) -> list[tuple[int, RawRow]]:
    """`numbered_lines` of a JSONL file's bytes, which must be UTF-8 without a byte order mark.

    Raises `DataError` naming ``file`` (and the line of the first bad byte) otherwise; a NUL
    byte, which JSON text cannot hold, is taken as a sign of UTF-16 or binary data.
    """
    for mark, encoding in _BYTE_ORDER_MARKS.items():
        if data.startswith(mark):
            raise DataError(
                f"starts with a {encoding} byte order mark; MASSIVE files are UTF-8 without one",
                file=file,
            )
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise DataError(f"not UTF-8 text: NUL byte on line {line} (UTF-16?)", file=file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"not UTF-8: byte {data[exc.start]:#04x} on line {line} ({exc.reason})", file=file
        ) from None
    return numbered_lines(text)
