"""The DuckDB views over run directories written before tasks and after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metrics.run_dirs import INTENT, write_new_run_dir, write_old_run_dir
from xlcl.metrics import ScoreMatrix
from xlcl.query import query
from xlcl.schedules import JOINT, SEQUENTIAL

ORDER = ("en-US", "de-DE")
SLOTS = np.array([[0.1, 0.2], [0.5, 0.3], [0.4, 0.6]])
ACCURACY = np.array([[0.2, 0.1], [0.9, 0.7]])


@pytest.fixture
def results(tmp_path: Path) -> Path:
    write_old_run_dir(tmp_path, "old", ScoreMatrix(ORDER, SLOTS), "vanilla")
    write_new_run_dir(tmp_path, "new", ScoreMatrix(ORDER, ACCURACY, JOINT, INTENT), "multi")
    return tmp_path


def test_runs_name_their_schedule_task_and_metric(results: Path) -> None:
    runs = query(results, "SELECT run_id, schedule, task, metric FROM runs ORDER BY run_id")
    assert runs.values.tolist() == [
        ["new", "joint", "massive-intent", "intent accuracy"],
        ["old", "sequential", "massive-slots", "span F1"],  # the defaults of old manifests
    ]


def test_scores_have_a_score_in_old_and_new_directories(results: Path) -> None:
    scores = query(results, "SELECT * FROM scores ORDER BY run_id, step, eval_locale")
    assert list(scores.columns[:5]) == ["run_id", "step", "trained_locale", "eval_locale", "score"]
    new, old = scores[scores["run_id"] == "new"], scores[scores["run_id"] == "old"]
    # ORDER BY eval_locale: de-DE before en-US
    assert old["score"].tolist() == pytest.approx([0.2, 0.1, 0.3, 0.5, 0.6, 0.4])
    assert old["score"].tolist() == old["f1"].tolist()  # read from f1
    assert new["score"].tolist() == pytest.approx([0.1, 0.2, 0.7, 0.9])  # accuracy
    assert new["f1"].isna().all()


def test_curves_have_a_dev_score_in_old_and_new_directories(results: Path) -> None:
    curves = query(results, "SELECT run_id, dev_score FROM curves ORDER BY run_id, step")
    assert curves["dev_score"].tolist() == pytest.approx([0.8, 0.4, 0.5])  # new, then old


def test_a_results_directory_of_old_runs_only(tmp_path: Path) -> None:
    write_old_run_dir(tmp_path, "old", ScoreMatrix(ORDER, SLOTS, SEQUENTIAL), "vanilla")
    scores = query(tmp_path, "SELECT avg(score) AS mean, avg(f1) AS f1 FROM scores")
    assert scores.loc[0, "mean"] == pytest.approx(scores.loc[0, "f1"])
    assert query(tmp_path, "SELECT dev_score FROM curves")["dev_score"].notna().all()
