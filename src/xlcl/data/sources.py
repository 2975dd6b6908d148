"""Where MASSIVE comes from: an archive, a directory, a URL or the Hugging Face hub.

``source`` is one of
- a local release archive (``amazon-massive-dataset-1.1.tar.gz``),
- a directory of ``<locale>.jsonl`` files (or one that holds ``1.1/data/``),
- an ``https://`` (or ``file://``) URL of a release archive, fetched once into the cache,
- ``hf://AmazonScience/massive`` (needs the ``datasets`` package),
- ``None``: the value of the environment variable ``XLCL_MASSIVE``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xlcl.data.archive import read_archive, sha256_file
from xlcl.data.download import fetch_archive
from xlcl.data.errors import DataError
from xlcl.data.hub import HUB_PREFIX, read_hub
from xlcl.data.rows import LocaleRows, jsonl_rows

ENV_SOURCE = "XLCL_MASSIVE"


@dataclass(frozen=True)
class SourceContent:
    """What a source yielded for the requested locales, and its checksum."""

    description: str
    checksum: str
    locales: tuple[LocaleRows, ...]


def resolve_source(source: str | Path | None) -> str | Path:
    """``source``, or the ``XLCL_MASSIVE`` setting when it is None."""
    if source is not None:
        return source
    configured = os.environ.get(ENV_SOURCE)
    if not configured:
        raise DataError(
            f"no MASSIVE source given: set {ENV_SOURCE} to the release archive "
            "(amazon-massive-dataset-1.1.tar.gz), a directory of <locale>.jsonl files, an "
            "https:// URL or hf://AmazonScience/massive, or pass the path explicitly"
        )
    return configured


def read_source(
    source: str | Path | None,
    locales: Sequence[str],
    *,
    sha256: str | None = None,
    missing_ok: bool = False,
) -> SourceContent:
    """Read ``locales`` from ``source`` (see the module docstring).

    A locale that an archive or directory lacks is a `DataError`; with ``missing_ok`` it is
    left out of the content instead (the hub has every locale).

    ``sha256`` is the expected checksum of an archive fetched from a URL; the official URL's is
    known. A local archive's checksum is that of its bytes; a directory's is the sha256 of the
    lines ``<file name> <sha256 of file>`` of the locales read, sorted by locale.
    """
    resolved = resolve_source(source)
    text = str(resolved)
    if text.startswith(HUB_PREFIX):
        checksum, rows = read_hub(text, locales)
        return SourceContent(text, checksum, rows)
    if "://" in text:
        archive = fetch_archive(text, sha256=sha256)
        rows = _from_archive(archive, locales, missing_ok)
        return SourceContent(text, sha256_file(archive), rows)
    path = Path(resolved).expanduser()
    if path.is_dir():
        return _from_directory(path, locales, missing_ok)
    if path.is_file():
        rows = _from_archive(
            path, locales, missing_ok
        )  # first: it turns an unreadable file into a DataError
        return SourceContent(str(path), sha256_file(path), rows)
    raise DataError(f"MASSIVE source does not exist: {path}")


def _from_archive(path: Path, locales: Sequence[str], missing_ok: bool) -> tuple[LocaleRows, ...]:
    members = read_archive(path, locales, missing_ok=missing_ok)
    files = {locale: f"{path.name}:{members[locale][0]}" for locale in locales if locale in members}
    return tuple(
        LocaleRows(locale, file, jsonl_rows(members[locale][1], file))
        for locale, file in files.items()
    )


def _from_directory(path: Path, locales: Sequence[str], missing_ok: bool) -> SourceContent:
    release = path / "1.1" / "data"
    folder = release if release.is_dir() else path
    files = {locale: folder / f"{locale}.jsonl" for locale in locales}
    missing = [file.name for file in files.values() if not file.is_file()]
    if missing_ok:
        files = {locale: file for locale, file in files.items() if file.is_file()}
    elif missing:
        raise DataError(f"no {', '.join(missing)} in {folder}", file=str(folder))
    contents = {locale: _read_bytes(file) for locale, file in files.items()}
    listing = "".join(
        f"{files[locale].name} {hashlib.sha256(contents[locale]).hexdigest()}\n"
        for locale in sorted(files)
    )
    rows = tuple(
        LocaleRows(locale, str(file), jsonl_rows(contents[locale], str(file)))
        for locale, file in files.items()
    )
    return SourceContent(str(folder), hashlib.sha256(listing.encode()).hexdigest(), rows)


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc}", file=str(file)) from exc
