"""The demo: its summary on hand-computed matrices, and the quick demo end to end on MASSIVE."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from xlcl.cli.demo import demo
from xlcl.demo import (
    METHODS,
    MethodSummary,
    demo_configs,
    machine,
    summary_markdown,
    system_cbt,
)
from xlcl.metrics import ScoreMatrix, cbt
from xlcl.schedules import INDEPENDENT, JOINT, SEQUENTIAL, Schedule
from xlcl.store import DONE

ORDER = ("en-US", "de-DE", "th-TH")
NAN = math.nan


def square(rows: list[list[float]], schedule: Schedule) -> ScoreMatrix:
    return ScoreMatrix(ORDER, np.array(rows), schedule)


def test_system_cbt_is_cbt_for_sequential_runs():
    matrix = square(
        [[0.0, 0.0, 0.0], [0.5, 0.2, 0.1], [0.4, 0.6, 0.2], [0.3, 0.5, 0.7]], SEQUENTIAL
    )
    # ((0.3 - 0.5) + (0.5 - 0.6)) / 2
    assert system_cbt(matrix) == pytest.approx(-0.15)
    assert system_cbt(matrix) == cbt(matrix)


def test_system_cbt_of_one_adapter_per_locale_is_zero():
    matrix = square(
        [[0.1, 0.0, 0.0], [0.5, NAN, NAN], [NAN, 0.6, NAN], [NAN, NAN, 0.7]], INDEPENDENT
    )
    assert math.isnan(cbt(matrix))  # xlcl.metrics: no single model saw two locales
    assert system_cbt(matrix) == 0.0


def test_system_cbt_of_a_joint_run_is_nan():
    matrix = square([[0.0, 0.0, 0.0], [0.5, 0.6, 0.7]], JOINT)
    assert math.isnan(system_cbt(matrix))


def test_summary_markdown_shows_points_and_nan_as_a_dash(tmp_path):
    rows = [
        MethodSummary("VANILLA", tmp_path, 0.4123, -0.0516, 0.2049, 0.0031),
        MethodSummary("NON-SHARED LoRA 8", tmp_path, 0.35, 0.0, NAN, 0.0031),
    ]
    assert summary_markdown(rows).splitlines() == [
        "| method | final F1 | CBT | CFT | untrained F1 |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| VANILLA | 41.2 | -5.2 | 20.5 | 0.3 |",
        "| NON-SHARED LoRA 8 | 35.0 | 0.0 | – | 0.3 |",
    ]


@pytest.mark.parametrize("quick", [False, True])
def test_demo_configs_are_the_three_methods_on_one_subset(quick, tmp_path, monkeypatch):
    monkeypatch.setenv("XLCL_MASSIVE", "/data/massive.tar.gz")
    configs = [config for _, config in demo_configs(quick, out=tmp_path)]
    assert [config.method for config in configs] == list(METHODS)
    assert {config.output_dir for config in configs} == {str(tmp_path)}
    for config in configs:
        assert config.model == "e5-small-offline"
        assert config.trim_vocabulary
        assert config.data.source is None  # $XLCL_MASSIVE
        assert config.order == configs[0].order
        assert config.data == configs[0].data
    assert configs[1].rank == configs[2].rank


def test_demo_downloads_the_official_archive_without_xlcl_massive(monkeypatch):
    from xlcl.data.download import KNOWN_SHA256, OFFICIAL_URL

    monkeypatch.delenv("XLCL_MASSIVE", raising=False)
    for _, config in demo_configs(quick=True):
        assert config.data.source == OFFICIAL_URL
    assert OFFICIAL_URL in KNOWN_SHA256  # the download is checked


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(demo)
    return app


@pytest.mark.integration
def test_quick_demo_shows_forgetting_and_transfer_then_reuses_its_runs(
    quick_demo, massive_archive, monkeypatch
):
    monkeypatch.setenv("XLCL_MASSIVE", str(massive_archive))
    result = quick_demo
    out = result.report.parents[1]
    assert result.report == out / "report" / "report.html"
    assert result.report.is_file()
    table, measured = result.summary_file.read_text().split("\n\n")
    assert table == summary_markdown(result.summary)
    assert measured == f"Measured on {machine()}.\n" == result.measured_on + "\n"
    assert f"torch {torch.__version__}, {torch.get_num_threads()} threads" in measured
    by_method = dict(zip(METHODS, result.summary, strict=True))
    for name in ("vanilla", "shared-lora"):
        row = by_method[name]
        assert row.cbt < 0, f"{row.label} does not forget: {row}"
        assert row.cft > row.untrained_f1, f"{row.label} does not transfer: {row}"
    assert by_method["nonshared-lora"].cbt == 0.0
    for row in result.summary:
        assert row.final_f1 > row.untrained_f1 + 0.1, f"{row.label} learned too little: {row}"

    finished = {directory: (directory / DONE).stat().st_mtime_ns for directory in result.run_dirs}
    result.report.unlink()
    started = time.perf_counter()
    output = CliRunner().invoke(cli(), ["--quick", "--out", str(out)])
    assert output.exit_code == 0, output.output
    assert time.perf_counter() - started < 60  # no training: the report only
    assert "already complete" in output.output
    assert f"report: {result.report}" in output.output
    assert f"table: {out / 'report' / 'summary.md'}" in output.output
    assert result.report.is_file()  # rebuilt
    assert {d: (d / DONE).stat().st_mtime_ns for d in result.run_dirs} == finished
