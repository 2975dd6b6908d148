"""Atomic file writes: a reader sees the old file or the new one, whole, never a mix.

The new content goes to a temporary file beside the target, is fsynced, and replaces the
target in one rename; the directory is fsynced too, so that the rename survives a power
loss. A write that fails (or is killed) leaves the old file as it was.

    atomic_write_bytes(path, b"...")
    atomic_write(path, lambda temporary: frame.to_parquet(temporary, index=False))
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Replace `path` with the file that `write` writes at the temporary path it is given.

    `write` may overwrite the (empty) temporary file it is given but must not rename it.
    The new file has the permissions a newly created file gets (the umask applies).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _create_temporary(path)
    try:
        write(temporary)
        fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync(path.parent)


def atomic_write_bytes(path: Path, content: bytes) -> None:
    """Replace `path` with `content` atomically (see `atomic_write`)."""
    atomic_write(path, lambda temporary: temporary.write_bytes(content))


def fsync(path: Path) -> None:
    """Flush `path`, a file or a directory (its entries: renames, new files), to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _create_temporary(path: Path) -> Path:
    # Created here, not by tempfile.mkstemp: mkstemp's files are private (0600), and the
    # rename would give the target those permissions instead of the umask's.
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(descriptor)
        return temporary
