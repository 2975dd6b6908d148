"""Reading per-locale JSONL members straight from a MASSIVE release archive (``.tar.gz``)."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

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


def read_archive(
    path: Path, locales: Sequence[str], *, missing_ok: bool = False
) -> dict[str, tuple[str, bytes]]:
    """``{locale: (member name, bytes)}`` for ``locales``, read in one pass over the archive.

    The whole archive is read, so that the checksum a compressed archive carries (gzip's
    CRC-32, bzip2's and xz's checks) is verified: tar itself has none for member data, and a
    corrupt byte must not become a silently different row. Raises `DataError` naming the
    archive when it cannot be read (not a tar, truncated, corrupt) or lacks a requested locale
    (unless ``missing_ok``: then the result holds the locales it has).
    """
    wanted = set(locales)
    found: dict[str, tuple[str, bytes]] = {}
    try:
        with path.open("rb") as raw, _decompressed(raw) as stream:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    match = _MEMBER.match(member.name)
                    if not match or match["locale"] not in wanted or not member.isfile():
                        continue
                    if match["locale"] in found:
                        raise DataError(
                            f"two members for {match['locale']}: {found[match['locale']][0]} "
                            f"and {member.name}",
                            file=str(path),
                        )
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        found[match["locale"]] = (member.name, extracted.read())
            while stream.read(1 << 20):  # the rest, up to the compressor's checksum
                pass
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise DataError(f"cannot read the archive: {exc}", file=str(path)) from exc
    missing = [locale for locale in locales if locale not in found]
    if missing and not missing_ok:
        raise DataError(
            f"archive has no <version>/data/<locale>.jsonl for: {', '.join(missing)}",
            file=str(path),
        )
    return found


def _decompressed(raw: BinaryIO) -> io.BufferedIOBase | BinaryIO:
    """``raw`` decompressed by the format its first bytes name; as it is for a plain tar."""
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw
