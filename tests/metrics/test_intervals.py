"""Intervals of stored runs: counts checked against the score table, `xlcl metrics --ci`,
``--diff``, and runs without counts (older, truncated, disagreeing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from metrics.counted_runs import write_counted_run
from metrics.run_dirs import write_old_run_dir
from xlcl.cell_counts import UTTERANCES, CellCounts, read_cell_counts, write_cell_counts
from xlcl.cli import metrics as cli
from xlcl.metrics import MetricsInputError, ScoreMatrix, read_run_dir
from xlcl.metrics.bootstrap import Bootstrap
from xlcl.metrics.intervals import NO_COUNTS, run_counts

ORDERS = [("en-US", "de-DE", "ja-JP"), ("ja-JP", "en-US", "de-DE")]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for i, order in enumerate(ORDERS):
        write_counted_run(root, f"van{i}", order, seed=i)
        write_counted_run(root, f"lora{i}", order, seed=10 + i, method="shared-lora")
    old = ScoreMatrix(ORDERS[0], np.full((4, 3), 0.5))
    write_old_run_dir(root, "old", old, method="mono")
    return root


def invoke(*args: str) -> Any:
    app = typer.Typer()
    app.command()(cli.metrics)
    return CliRunner().invoke(app, [*args])


def test_counts_are_read_and_checked_or_said_missing(sweep: Path, tmp_path: Path) -> None:
    run = read_run_dir(sweep / "van0")
    assert isinstance(run_counts(run.run_id, run.source, run.matrix), CellCounts)
    old = read_run_dir(sweep / "old")
    why = run_counts(old.run_id, old.source, old.matrix)
    assert why == f"{NO_COUNTS}: {sweep / 'old' / UTTERANCES} missing"
    table = tmp_path / "table.csv"
    table.write_text("step,trained_locale,eval_locale,score\n0,,en-US,0.1\n1,en-US,en-US,0.5\n")
    assert "is a score table" in str(run_counts("t", table, run.matrix))
    # Counts for fewer cells than the matrix scores: no interval, said why.
    counts = CellCounts.from_cells(c for c in _counts(sweep / "van0").cells() if c[0] < 3)
    write_cell_counts(sweep / "van0" / UTTERANCES, counts)
    why = run_counts(run.run_id, run.source, run.matrix)
    assert why == (
        f"{NO_COUNTS} for 3 scored cell(s) in {sweep / 'van0' / UTTERANCES} "
        "(the first: step 3, en-US)"
    )


def _counts(directory: Path) -> CellCounts:
    return read_cell_counts(directory / UTTERANCES)


def test_counts_that_disagree_with_the_table_are_an_error_naming_the_run(sweep: Path) -> None:
    scores = pd.read_parquet(sweep / "van1" / "scores.parquet")
    scores.loc[5, "n_pred"] += 1
    scores.to_parquet(sweep / "van1" / "scores.parquet", index=False)
    run = read_run_dir(sweep / "van1")
    with pytest.raises(MetricsInputError, match=r"^run van1: .*utterances.npz disagrees with "):
        run_counts(run.run_id, run.source, run.matrix)
    result = invoke(str(sweep), "--ci")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "run van1" in result.stderr
    assert "spans from the counts, n_pred" in result.stderr


def test_json_intervals_per_run_and_per_label(sweep: Path) -> None:
    result = invoke(str(sweep), "--ci", "--json", "--resamples", "200", "--seed", "4")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ci"] == {"level": 0.95, "resamples": 200, "seed": 4}
    boot = Bootstrap(resamples=200, seed=4)
    pairs = []
    for run_id in ("van0", "van1"):
        run = read_run_dir(sweep / run_id)
        counts = run_counts(run.run_id, run.source, run.matrix)
        assert isinstance(counts, CellCounts)
        pairs.append((run.matrix, counts))
        expected = boot.run_intervals(run.matrix, counts)
        entry = doc["runs"][run_id]
        assert entry["ci_note"] is None
        for name in ("final_score", "cbt", "cft"):
            got = entry["ci"][name]
            assert got["estimate"] == pytest.approx(entry[name])
            assert (got["low"], got["high"]) == (expected[name].low, expected[name].high)
    label = doc["aggregate"][doc["runs"]["van0"]["label"]]
    mean = boot.mean_intervals(pairs)["final_score"]
    assert label["ci"]["final_score"]["low"] == mean.low
    assert label["ci"]["final_score"]["estimate"] == pytest.approx(
        label["scalars"]["final_score"]["mean"]
    )
    by_locale = boot.locale_intervals(pairs)
    for locale, entry in label["locales"].items():
        final = entry["final_score"]
        assert final["ci"]["estimate"] == pytest.approx(final["mean"]), locale
        assert (final["ci"]["low"], final["ci"]["high"]) == (
            by_locale[locale].low,
            by_locale[locale].high,
        )
    old = doc["runs"]["old"]
    assert old["ci"] is None and old["ci_note"].startswith(f"{NO_COUNTS}: ")
    assert doc["aggregate"][old["label"]]["ci"] is None
    assert "ci" not in doc["aggregate"][old["label"]]["locales"]["en-US"]["final_score"]
    assert f"no interval for run old: {NO_COUNTS}" in result.stderr


def test_tables_show_the_intervals_and_a_truncated_file_is_named(sweep: Path) -> None:
    path = sweep / "lora1" / UTTERANCES
    path.write_bytes(path.read_bytes()[:50])
    result = invoke(str(sweep), "--ci", "--resamples", "50")
    assert result.exit_code == 0, result.output
    assert "95% CI" in result.stdout and "CI of the mean" in result.stdout
    assert f"no interval for run lora1: {path}: unreadable per-utterance counts" in result.stderr
    assert "no per-utterance counts in run(s) lora1" in result.stdout
    without = invoke(str(sweep))
    assert without.exit_code == 0 and "CI" not in without.stdout


def test_the_difference_of_two_methods_is_paired(sweep: Path, tmp_path: Path) -> None:
    vanilla, lora = tmp_path / "vanilla", tmp_path / "lora"
    vanilla.mkdir(), lora.mkdir()
    for i in range(2):
        (sweep / f"van{i}").rename(vanilla / f"van{i}")
        (sweep / f"lora{i}").rename(lora / f"lora{i}")
    result = invoke("--diff", str(vanilla), str(lora), "--json", "--resamples", "100")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)["diff"]
    assert diff["a"]["runs"] == ["van0", "van1"] and diff["b"]["runs"] == ["lora0", "lora1"]
    boot = Bootstrap(resamples=100)
    sides = []
    for side in (vanilla, lora):
        runs = [read_run_dir(d) for d in sorted(side.iterdir())]
        sides.append([(r.matrix, run_counts(r.run_id, r.source, r.matrix)) for r in runs])
    expected = boot.difference_intervals(*sides)
    for name in ("final_score", "cbt", "cft"):
        got = diff["difference"][name]
        assert got["estimate"] == pytest.approx(expected[name].estimate)
        assert (got["low"], got["high"]) == (expected[name].low, expected[name].high)
        assert got["estimate"] == pytest.approx(
            diff["a"][name]["estimate"] - diff["b"][name]["estimate"]
        )
    text = invoke("--diff", str(vanilla), str(lora), "--resamples", "100")
    assert text.exit_code == 0 and "A − B" in text.stdout and "95% CI" in text.stdout
    missing = invoke("--diff", str(vanilla), str(sweep / "old"))
    assert missing.exit_code == 2 and f"--diff: run old: {NO_COUNTS}" in missing.stderr
