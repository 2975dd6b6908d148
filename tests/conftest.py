"""Shared fixtures: the real MASSIVE archive (skipped where absent) and tiny offline models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tiny_models import save_tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "amazon-massive-dataset-1.1.tar.gz"


def massive_archive_path() -> Path | None:
    """$XLCL_MASSIVE, else the shared archive beside the repository, if it exists."""
    candidate = Path(os.environ.get("XLCL_MASSIVE") or SHARED_ARCHIVE)  # empty = unset
    return candidate if candidate.exists() else None


@pytest.fixture(scope="session")
def massive_archive() -> Path:
    """The real MASSIVE 1.1 archive; tests that need it skip with a reason where it is absent."""
    path = massive_archive_path()
    if path is None:
        pytest.skip(
            f"real MASSIVE not found: set XLCL_MASSIVE or place the archive at {SHARED_ARCHIVE}"
        )
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random XLM-R-style encoder with a tokenizer, saved to disk."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-xlmr"))
