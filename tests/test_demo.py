"""The demo: its summary on hand-computed matrices, and the quick demo end to end on MASSIVE."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from metrics.run_dirs import write_new_run_dir
from xlcl.cli.demo import demo
from xlcl.config import ConfigError
from xlcl.demo import (
    METHODS,
    MethodSummary,
    demo_configs,
    machine,
    summarize_runs,
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
        MethodSummary("VANILLA", (tmp_path,), 0.4123, -0.0516, 0.2049, 0.0031),
        MethodSummary("NON-SHARED LoRA 8", (tmp_path,), 0.35, 0.0, NAN, 0.0031),
    ]
    assert summary_markdown(rows).splitlines() == [
        "| method | final F1 | CBT | CFT | untrained F1 |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| VANILLA | 41.2 | -5.2 | 20.5 | 0.3 |",
        "| NON-SHARED LoRA 8 | 35.0 | 0.0 | – | 0.3 |",
    ]


def test_several_seeds_are_summarized_as_mean_and_std_per_method(tmp_path):
    """Two VANILLA seeds and one SHARED run: the seeds' mean ± std (ddof 1), by hand."""
    seed_42 = [[0.0, 0.0, 0.0], [0.5, 0.2, 0.1], [0.4, 0.6, 0.2], [0.3, 0.5, 0.7]]
    seed_43 = [[0.0, 0.0, 0.0], [0.7, 0.2, 0.1], [0.6, 0.8, 0.2], [0.5, 0.5, 0.9]]
    runs = [
        ("VANILLA", write_new_run_dir(tmp_path, "a", square(seed_42, SEQUENTIAL), "vanilla")),
        ("SHARED", write_new_run_dir(tmp_path, "b", square(seed_42, SEQUENTIAL), "shared")),
        ("VANILLA", write_new_run_dir(tmp_path, "c", square(seed_43, SEQUENTIAL), "vanilla")),
    ]
    vanilla, shared = summarize_runs(runs)
    assert vanilla.run_dirs == (tmp_path / "a", tmp_path / "c")
    # final F1 1.5/3 and 1.9/3; CBT ((0.3-0.5)+(0.5-0.6))/2 = -0.15 and
    # ((0.5-0.7)+(0.5-0.8))/2 = -0.25; CFT, per column then over columns, (0.2 + 0.15)/2
    # both times
    assert vanilla.final_f1 == pytest.approx(1.7 / 3)
    assert vanilla.cbt == pytest.approx(-0.2)
    assert vanilla.cft == pytest.approx(0.175)
    # the std (ddof 1) of two values d apart is d / sqrt(2)
    assert vanilla.std == pytest.approx(
        {"final_f1": 0.4 / 3 / math.sqrt(2), "cbt": 0.1 / math.sqrt(2), "cft": 0, "untrained_f1": 0}
    )
    assert shared.std == {}  # one run: no spread to show
    assert summary_markdown([vanilla, shared]).splitlines()[2:] == [
        "| VANILLA | 56.7 ± 9.4 | -20.0 ± 7.1 | 17.5 ± 0.0 | 0.0 ± 0.0 |",
        "| SHARED | 50.0 | -15.0 | 17.5 | 0.0 |",
    ]


def test_seeds_repeat_the_methods_with_the_next_seeds_and_keep_the_first_run_ids(tmp_path):
    one = demo_configs(out=tmp_path)
    three = demo_configs(out=tmp_path, seeds=3)
    assert [config.run_id for _, config in three[:3]] == [config.run_id for _, config in one]
    assert [config.train.seed for _, config in three] == [42] * 3 + [43] * 3 + [44] * 3
    assert [config.method for _, config in three] == list(METHODS) * 3
    assert len({config.run_id for _, config in three}) == 9
    with pytest.raises(ConfigError, match="--seeds: 0 is not a number of seeds"):
        demo_configs(seeds=0)


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
    assert measured == f"F1 points (x100). Measured on {machine()}.\n"
    assert result.measured_on == f"Measured on {machine()}." and result.spread == ""
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
