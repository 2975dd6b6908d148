"""Raw rows of one locale as a source hands them over, before validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

RawRow = str | Mapping[str, object]
"""A row as read: the JSON text of a line, or an already decoded row (hub)."""


@dataclass(frozen=True)
class LocaleRows:
    """The raw rows of one locale with their 1-based line (or row) numbers in ``file``."""

    locale: str
    file: str
    rows: Sequence[tuple[int, RawRow]]


def numbered_lines(text: str) -> list[tuple[int, RawRow]]:
    """The non-blank lines of a JSONL text with their 1-based line numbers."""
    return [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
