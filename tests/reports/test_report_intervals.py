"""Tables 1 and 2 show 95% bootstrap intervals where runs keep per-utterance counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metrics.counted_runs import write_counted_run
from metrics.run_dirs import write_old_run_dir
from xlcl.cell_counts import UTTERANCES, CellCounts
from xlcl.metrics import ScoreMatrix, read_run_dir
from xlcl.metrics.bootstrap import Bootstrap
from xlcl.metrics.intervals import NO_COUNTS, run_counts
from xlcl.reports import ReportInputError, build_report

ORDERS = [("en-US", "de-DE", "ja-JP"), ("ja-JP", "en-US", "de-DE")]
RESAMPLES = 200


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for i, order in enumerate(ORDERS):
        write_counted_run(root, f"van{i}", order, seed=i)
    old = ScoreMatrix(ORDERS[0], np.full((4, 3), 0.5))
    write_old_run_dir(root, "old", old, method="shared-lora", rank=8)
    return root


def test_tables_show_the_interval_of_each_label_s_mean(sweep: Path, tmp_path: Path) -> None:
    files = build_report([sweep], tmp_path / "report", resamples=RESAMPLES)
    runs = [read_run_dir(sweep / f"van{i}") for i in range(2)]
    pairs = [(r.matrix, run_counts(r.run_id, r.source, r.matrix)) for r in runs]
    assert all(isinstance(counts, CellCounts) for _, counts in pairs)
    expected = Bootstrap(resamples=RESAMPLES).mean_intervals(pairs)
    table1 = pd.read_csv(tmp_path / "report" / "tables" / "table1.csv")
    vanilla = table1[table1["method"] == "vanilla"].iloc[0]
    assert vanilla["score_ci_low"] == pytest.approx(expected["final_score"].low)
    assert vanilla["score_ci_high"] == pytest.approx(expected["final_score"].high)
    assert np.isnan(table1[table1["method"] == "shared-lora"].iloc[0]["score_ci_low"])
    table2 = pd.read_csv(tmp_path / "report" / "tables" / "table2.csv")
    vanilla2 = table2[table2["method"] == "vanilla"].iloc[0]
    for q in ("cbt", "cft"):
        assert vanilla2[f"{q}_ci_low"] == pytest.approx(expected[q].low)
        assert vanilla2[f"{q}_ci_high"] == pytest.approx(expected[q].high)
    markdown = (tmp_path / "report" / "tables" / "table1.md").read_text()
    low, high = expected["final_score"].low * 100, expected["final_score"].high * 100
    assert "95% CI (%)" in markdown and f"[{low:.2f}, {high:.2f}]" in markdown
    assert "CBT 95% CI" in (tmp_path / "report" / "tables" / "table2.md").read_text()
    assert f"No 95% CI for run old: {NO_COUNTS}: {sweep / 'old' / UTTERANCES} missing." in (
        files.notes
    )
    assert "95% CI (%)" in files.html.read_text()


def test_runs_without_counts_give_tables_without_interval_columns(
    sweep: Path, tmp_path: Path
) -> None:
    files = build_report([sweep / "old"], tmp_path / "report", resamples=RESAMPLES)
    assert "CI" not in (tmp_path / "report" / "tables" / "table1.md").read_text()
    assert "No 95% CIs: no run has per-utterance counts (utterances.npz)." in files.notes


def test_a_label_mixing_runs_with_and_without_counts_says_which_lack_them(
    sweep: Path, tmp_path: Path
) -> None:
    # Two VANILLA runs, one of them without its counts: the label has no interval, and the
    # note names that run instead of claiming that no run has counts.
    (sweep / "van1" / UTTERANCES).unlink()
    files = build_report([sweep / "van0", sweep / "van1"], tmp_path / "report", resamples=5)
    assert "no run has per-utterance counts" not in " ".join(files.notes)
    assert (
        "No 95% CIs: a label gets them only when each of its runs has per-utterance counts "
        f"(utterances.npz), and every label has a run without: run van1: {NO_COUNTS}: "
        f"{sweep / 'van1' / UTTERANCES} missing."
    ) in files.notes


def test_counts_that_disagree_with_the_table_stop_the_report(sweep: Path, tmp_path: Path) -> None:
    scores = pd.read_parquet(sweep / "van1" / "scores.parquet")
    scores.loc[0, "n_sentences"] += 1
    scores.to_parquet(sweep / "van1" / "scores.parquet", index=False)
    with pytest.raises(ReportInputError, match=r"^run van1: .* disagrees with scores\.parquet"):
        build_report([sweep], tmp_path / "report", resamples=RESAMPLES)
