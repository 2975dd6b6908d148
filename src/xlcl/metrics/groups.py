"""Group means of per-locale quantities: by vitality, script, family or a user's grouping.

A group's value is the mean over its locales of the per-locale values (each locale
weighs one, NaN skipped); Table 1's group columns are this for the final per-locale F1.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Protocol

import pandas as pd

from xlcl.metrics.matrix import MetricsInputError

Grouping = Mapping[str, str]  # locale -> group


class LocaleFacts(Protocol):
    """The attributes of a locale that groupings read (``xlcl.data.LocaleFacts``)."""

    @property
    def script(self) -> str: ...
    @property
    def latin(self) -> bool: ...
    @property
    def family(self) -> str: ...
    @property
    def vitality(self) -> str: ...


def known_locales() -> Mapping[str, LocaleFacts]:
    """The locale table of ``xlcl.data`` (imported here so that metrics load without it)."""
    from xlcl.data import LOCALES

    return LOCALES


def attribute_groupings(
    locales: Iterable[str], facts: Mapping[str, LocaleFacts]
) -> dict[str, dict[str, str]]:
    """Groupings ``vitality``, ``latin`` (Latin / non-Latin), ``script`` and ``family``.

    Only locales present in ``facts`` are grouped; see ``ungrouped``.
    """
    known = [loc for loc in locales if loc in facts]
    return {
        "vitality": {loc: facts[loc].vitality for loc in known},
        "latin": {loc: "Latin" if facts[loc].latin else "non-Latin" for loc in known},
        "script": {loc: facts[loc].script for loc in known},
        "family": {loc: facts[loc].family for loc in known},
    }


def ungrouped(locales: Iterable[str], grouping: Grouping) -> list[str]:
    """The locales that ``grouping`` does not place in any group, sorted."""
    return sorted(set(locales) - set(grouping))


def read_grouping(path: Path, known: Collection[str]) -> dict[str, str]:
    """A grouping from a CSV file with header ``locale,group``; every locale must be known."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is not a header
            rows = list(csv.reader(handle))
    except OSError as err:
        raise MetricsInputError(f"{path}: cannot read grouping file ({err.strerror})") from err
    if not rows or [cell.strip() for cell in rows[0]] != ["locale", "group"]:
        raise MetricsInputError(f"{path}:1: grouping file must have the header 'locale,group'")
    grouping: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2 or not row[1].strip():
            raise MetricsInputError(f"{path}:{line}: expected 'locale,group', got {row}")
        locale, group = row[0].strip(), row[1].strip()
        if locale not in known:
            raise MetricsInputError(f"{path}:{line}: unknown locale {locale!r}")
        if locale in grouping:
            raise MetricsInputError(f"{path}:{line}: locale {locale!r} listed twice")
        grouping[locale] = group
    return grouping


def group_means(values: pd.DataFrame, grouping: Grouping) -> pd.DataFrame:
    """Mean per group of each column of ``values`` (index: locale), with ``n_locales``.

    Locales of ``values`` outside ``grouping`` are left out; groups without a locale in
    ``values`` do not appear.
    """
    inside = values[values.index.isin(list(grouping))]
    labels = inside.index.map(lambda loc: grouping[loc])
    table = inside.groupby(labels, sort=True).mean()
    table.insert(0, "n_locales", inside.groupby(labels, sort=True).size())
    table.index.name = "group"
    return table
