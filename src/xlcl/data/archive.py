"""Reading per-locale JSONL members straight from a MASSIVE release archive (``.tar.gz``)."""

from __future__ import annotations

import hashlib
import re
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from xlcl.data.errors import DataError

# ``1.1/data/en-US.jsonl`` in release 1.1, ``1.0/data/...`` in 1.0
_MEMBER = re.compile(r"^[^/]+/data/(?P<locale>[a-z]{2}-[A-Z]{2})\.jsonl$")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_archive(path: Path, locales: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``{locale: (member name, text)}`` for ``locales``, read in one pass over the archive.

    Stops as soon as every requested member is read. Raises `DataError` naming the archive when
    it cannot be read (not a tar, truncated, corrupt) or lacks a requested locale.
    """
    wanted = set(locales)
    found: dict[str, tuple[str, str]] = {}
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                match = _MEMBER.match(member.name)
                if not match or match["locale"] not in wanted or not member.isfile():
                    continue
                stream = archive.extractfile(member)
                if stream is None:
                    continue
                found[match["locale"]] = (member.name, stream.read().decode("utf-8"))
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"cannot read the archive: {exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"archive member is not UTF-8: {exc}", file=str(path)) from exc
    missing = [locale for locale in locales if locale not in found]
    if missing:
        raise DataError(
            f"archive has no <version>/data/<locale>.jsonl for: {', '.join(missing)}",
            file=str(path),
        )
    return found
