"""Partial input: one run, one method, unfinished runs, score tables, nothing to report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.report_runs import MULTI_A, ORDER_A, ORDER_B, VANILLA_A, VANILLA_B, write_run
from xlcl.metrics import ScoreMatrix, avg_score, cbt, final_score, to_square
from xlcl.reports import ReportInputError, build_report, collect

UNKNOWN = "test/offline-unknown"  # no parameter count: keeps these tests free of torch


def table1(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / "table1.csv")


def test_one_run(tmp_path: Path) -> None:
    run = write_run(tmp_path, "only", "vanilla", ORDER_A, VANILLA_A, model=UNKNOWN)
    files = build_report([run], tmp_path / "out")
    table = table1(tmp_path / "out")
    assert len(table) == 1 and table.loc[0, "score_mean"] == pytest.approx(0.6)
    assert np.isnan(table.loc[0, "score_std"])  # one order: no spread
    assert "59.17" not in (tmp_path / "out" / "tables" / "table1.md").read_text()
    assert "| 60.00 |" in (tmp_path / "out" / "tables" / "table1.md").read_text()
    assert files.html.exists() and files.n_runs == 1


def test_multi_only_has_no_table2_and_no_sequential_figures(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "m", "multi", ORDER_A, MULTI_A, model=UNKNOWN)
    files = build_report([tmp_path / "runs"], tmp_path / "out")
    assert not (tmp_path / "out" / "tables" / "table2.md").exists()
    assert any("Table 2" in n and "left out" in n for n in files.notes)
    assert any("no sequential run" in n for n in files.notes)
    assert {p.stem for p in files.figures} == {
        "fig2_avg_score",
        "fig7_matrix_multi-test-offline-unknown",
    }


def test_run_in_progress_uses_its_complete_steps(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep, "done-a", "vanilla", ORDER_A, VANILLA_A, model=UNKNOWN)
    # steps 0..2 complete (9 rows), step 3 has one of three cells: 2 of 3 steps done
    write_run(
        sweep,
        "live-b",
        "vanilla",
        ORDER_B,
        VANILLA_B,
        model=UNKNOWN,
        status="running",
        done=False,
        rows=10,
    )
    collected = collect([sweep])
    live = next(r for r in collected.runs if r.run_id == "live-b")
    assert live.state == "in progress" and (live.steps_done, live.n_steps) == (2, 3)
    assert live.matrix.order == ORDER_B[:2]
    assert np.isnan(live.observed.scores[3, 1:]).all() and live.observed.scores[3, 0] == 0.55

    files = build_report([sweep], tmp_path / "out")
    table = table1(tmp_path / "out").set_index("label")
    assert len(table) == 2  # never averaged with the finished run
    live_row = table.loc[f"vanilla {UNKNOWN} [in progress 2/3: live-b]"]
    cut = ScoreMatrix(ORDER_B[:2], np.array(VANILLA_B)[:3, :2], method="vanilla")
    assert live_row["score_mean"] == pytest.approx(final_score(cut))  # mean(.6, .65)
    assert live_row["status"] == "in progress (2/3)"
    table2 = pd.read_csv(tmp_path / "out" / "tables" / "table2.csv").set_index("label")
    assert table2.loc[live_row.name, "cbt_mean"] == pytest.approx(cbt(cut))
    html = files.html.read_text()
    assert "in progress (2/3)" in html and "live-b" in html
    assert any("unfinished run" in n for n in files.notes)


def test_failed_and_unstarted_runs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(
        sweep,
        "fail",
        "vanilla",
        ORDER_A,
        VANILLA_A,
        model=UNKNOWN,
        status="failed",
        done=False,
        rows=6,
    )
    write_run(
        sweep,
        "fresh",
        "vanilla",
        ORDER_B,
        VANILLA_B,
        model=UNKNOWN,
        status="running",
        done=False,
        rows=3,
    )  # only step 0
    write_run(sweep, "marker", "multi", ORDER_A, MULTI_A, model=UNKNOWN, done=False)
    files = build_report([sweep], tmp_path / "out")
    states = {r["label"]: r["status"] for _, r in table1(tmp_path / "out").iterrows()}
    assert sorted(states.values()) == ["failed (1/3)", "in progress (1/1)"]
    assert any("fresh: in progress: no training step finished yet" in n for n in files.notes)
    assert "RuntimeError: out of memory" in files.html.read_text()


def test_score_table_input(tmp_path: Path) -> None:
    path = tmp_path / "square.csv"
    to_square(ScoreMatrix(ORDER_A, np.array(VANILLA_A))).to_csv(path, index=False)
    build_report([path], tmp_path / "out")
    table = table1(tmp_path / "out")
    assert table.loc[0, "label"] == "unspecified"
    curve = avg_score(ScoreMatrix(ORDER_A, np.array(VANILLA_A)))
    assert table.loc[0, "score_mean"] == pytest.approx(curve[-1])
    assert (
        "score table without a manifest" in (tmp_path / "out" / "tables" / "table1.md").read_text()
    )


def test_nothing_to_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep, "fresh", "vanilla", ORDER_A, VANILLA_A, status="running", done=False, rows=3)
    with pytest.raises(ReportInputError, match=r"nothing to report.*no training step finished"):
        build_report([sweep], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="no run directory"):
        collect([tmp_path / "empty"])
    with pytest.raises(ReportInputError, match="no such file"):
        collect([tmp_path / "missing"])


def test_same_run_twice(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", "vanilla", ORDER_A, VANILLA_A)
    with pytest.raises(ReportInputError, match="appears twice"):
        collect([run, tmp_path])
