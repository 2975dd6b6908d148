"""Loading MASSIVE locales into validated utterances."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xlcl.data.errors import DataError, InvalidRow
from xlcl.data.locales import require_locales
from xlcl.data.rows import LocaleRows, RawRow
from xlcl.data.sources import read_source
from xlcl.data.utterance import SPLITS, Split, Utterance, utterance_from_row


@dataclass(frozen=True)
class MassiveData:
    """Validated utterances of some MASSIVE locales, by locale and split.

    ``checksum`` identifies the source (sha256 of the archive, or of the per-locale files);
    ``quarantine`` lists the invalid rows skipped with ``skip_invalid=True``; a split without
    rows is loaded as empty and listed in ``empty_splits``.
    """

    source: str
    checksum: str
    by_locale: Mapping[str, Mapping[Split, tuple[Utterance, ...]]]
    quarantine: list[InvalidRow] = field(default_factory=list)

    @property
    def locales(self) -> tuple[str, ...]:
        """The loaded locales, in the order requested."""
        return tuple(self.by_locale)

    @property
    def empty_splits(self) -> list[tuple[str, Split]]:
        """``(locale, split)`` for every loaded split without a single (valid) row."""
        return [
            (locale, split)
            for locale, splits in self.by_locale.items()
            for split in SPLITS
            if not splits[split]
        ]

    def utterances(self, locale: str, split: Split) -> list[Utterance]:
        """The utterances of one locale's split, in file order."""
        if locale not in self.by_locale:
            raise DataError(f"locale {locale!r} was not loaded (loaded: {', '.join(self.locales)})")
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        return list(self.by_locale[locale][split])


def load_massive(
    source: str | Path | None,
    locales: Sequence[str],
    *,
    skip_invalid: bool = False,
    sha256: str | None = None,
    missing_ok: bool = False,
) -> MassiveData:
    """Read and validate ``locales`` of MASSIVE from ``source``.

    ``source`` is a release archive, a directory of ``<locale>.jsonl`` files, an ``https://``
    URL of a release archive (cached; ``sha256`` is its expected checksum, known for the
    official URL), ``hf://AmazonScience/massive``, or None for ``$XLCL_MASSIVE``. An invalid row
    raises `DataError` naming file, line, id and problem; with ``skip_invalid`` it is left out
    and recorded in ``quarantine`` instead. A locale the source lacks is a `DataError`; with
    ``missing_ok`` the result holds the locales the source has (at least one).
    """
    wanted = require_locales(locales)
    if not wanted:
        raise DataError("no locales requested")
    content = read_source(source, wanted, sha256=sha256, missing_ok=missing_ok)
    present = {part.locale for part in content.locales}
    if not present:
        raise DataError(f"no <locale>.jsonl of MASSIVE in {content.description}")
    quarantine: list[InvalidRow] = []
    collected: dict[str, dict[Split, list[Utterance]]] = {
        locale: {split: [] for split in SPLITS} for locale in wanted if locale in present
    }
    seen: dict[str, dict[str, str]] = {locale: {} for locale in present}
    for part in content.locales:
        for utterance in _convert(part, seen[part.locale], quarantine, skip_invalid):
            collected[part.locale][utterance.split].append(utterance)
    by_locale = {
        locale: {split: tuple(rows) for split, rows in splits.items()}
        for locale, splits in collected.items()
    }
    return MassiveData(content.description, content.checksum, by_locale, quarantine)


def _convert(
    part: LocaleRows, seen: dict[str, str], quarantine: list[InvalidRow], skip_invalid: bool
) -> list[Utterance]:
    utterances = []
    for line, raw in part.rows:
        row: object = None
        try:
            row = _decode(raw)
            utterance = utterance_from_row(row, part.locale)
            if utterance.id in seen:
                raise DataError(f"duplicate id (first at {seen[utterance.id]})")
        except DataError as exc:
            invalid = InvalidRow(part.file, line, _row_id(row), exc.problem)
            if not skip_invalid:
                raise DataError.from_row(invalid) from None
            quarantine.append(invalid)
            continue
        seen[utterance.id] = f"{part.file}:{line}"
        utterances.append(utterance)
    return utterances


def _decode(raw: RawRow) -> object:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    # ValueError: also an integer too long to convert; RecursionError: nesting too deep
    except (ValueError, RecursionError) as exc:
        raise DataError(f"invalid JSON: {exc}") from None


def _row_id(row: object) -> str | None:
    if not isinstance(row, Mapping):
        return None
    value = row.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    # an id with a lone surrogate must still print
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")
