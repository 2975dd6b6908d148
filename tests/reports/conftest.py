"""Fixtures of the report tests: a synthetic sweep and its report, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.report_runs import write_sweep
from xlcl.reports import ReportFiles, build_report


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Vanilla, SHARED LoRA r32, NON-SHARED LoRA r32 (orders A, B) and MULTI (A)."""
    return write_sweep(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def built(sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    """The report of ``sweep``."""
    return build_report([sweep], tmp_path_factory.mktemp("report") / "out")
