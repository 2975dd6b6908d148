"""MASSIVE from the Hugging Face hub (``hf://AmazonScience/massive``) through ``datasets``.

``AmazonScience/massive`` is a script dataset; ``datasets`` 4 and later no longer run scripts,
so the hub's automatic parquet conversion (revision ``refs/convert/parquet``, one folder per
locale) is read instead. ``datasets`` is an optional dependency, imported only here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from xlcl.data.errors import DataError
from xlcl.data.rows import LocaleRows, RawRow

HUB_PREFIX = "hf://"
PARQUET_REVISION = "refs/convert/parquet"


def read_hub(source: str, locales: Sequence[str]) -> tuple[str, tuple[LocaleRows, ...]]:
    """``(checksum, rows per locale)`` from ``hf://<repo>``.

    Rows keep the hub's fields, with class-label integers (``intent``, ``scenario``) turned back
    into names. The checksum is the sha256 of the rows as canonical JSON lines (sorted keys), in
    the order of the sorted locales and the hub's splits.
    """
    try:
        import datasets
    except ImportError as exc:
        raise DataError(
            f"reading {source} needs the `datasets` package (pip install datasets), "
            "or use the release archive instead"
        ) from exc
    repo = source.removeprefix(HUB_PREFIX)
    digest = hashlib.sha256()
    result = []
    for locale in locales:
        try:
            splits = datasets.load_dataset(repo, data_dir=locale, revision=PARQUET_REVISION)
        except Exception as exc:  # datasets raises many types; all mean "cannot read"
            raise DataError(f"cannot load {locale}: {exc}", file=source) from exc
        for split_name, split in splits.items():
            rows = [(number, _named(row, split.features)) for number, row in enumerate(split, 1)]
            result.append(LocaleRows(locale, f"{source}/{locale}/{split_name}", rows))
    for part in sorted(result, key=lambda part: part.locale):
        for _, row in part.rows:
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest(), tuple(result)


def _named(row: Mapping[str, Any], features: Mapping[str, Any]) -> RawRow:
    return {
        key: features[key].int2str(value) if hasattr(features[key], "int2str") else value
        for key, value in row.items()
    }
