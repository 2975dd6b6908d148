"""Fetching a MASSIVE release archive from a URL once into a local cache, checked by sha256."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from xlcl.data.archive import sha256_file
from xlcl.data.errors import DataError

OFFICIAL_URL = (
    "https://amazon-massive-nlu-dataset.s3.amazonaws.com/amazon-massive-dataset-1.1.tar.gz"
)
# sha256 of the file at OFFICIAL_URL as published (release 1.1); the archive in the project's
# ../shared/data is a rebuild with another checksum (e8285af9...), see docs/data.md.
KNOWN_SHA256 = {OFFICIAL_URL: "4cba5faa11c71437928e17cb1b9b3d8b8e727e7ea363a3a9a8045e19c0491577"}
ENV_CACHE = "XLCL_CACHE"


def cache_dir() -> Path:
    """``$XLCL_CACHE``, else ``~/.cache/xlcl``."""
    configured = os.environ.get(ENV_CACHE)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "xlcl"


def fetch_archive(url: str, *, sha256: str | None = None) -> Path:
    """The cached copy of the archive at ``url``, downloading it first if needed.

    ``sha256`` is the expected checksum; without it, ``url`` must be one whose checksum is
    known (`KNOWN_SHA256`). The file lives at ``<cache>/massive/<sha256>/<file name>`` and is
    checked on every use; a download with another checksum is discarded with a `DataError`.
    """
    expected = (sha256 or KNOWN_SHA256.get(url, "")).lower()
    if not expected:
        raise DataError(f"no known sha256 for {url}; pass the expected sha256 of the archive")
    name = Path(urlparse(url).path).name or "massive.tar.gz"
    target = cache_dir() / "massive" / expected / name
    if not target.is_file():
        _download(url, target)
    actual = sha256_file(target)
    if actual != expected:
        target.unlink()
        raise DataError(
            f"sha256 mismatch for {url}: expected {expected}, got {actual}; file discarded",
            file=str(target),
        )
    return target


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as part:
        try:
            with urllib.request.urlopen(url) as response:
                shutil.copyfileobj(response, part)
        except OSError as exc:
            Path(part.name).unlink()
            raise DataError(f"cannot download {url}: {exc}") from exc
    Path(part.name).replace(target)
