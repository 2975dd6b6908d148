"""Reading runs: run directories, sweeps, long and square tables, and their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from metrics.run_dirs import INTENT, write_new_run_dir, write_old_run_dir
from xlcl.metrics import (
    MetricsInputError,
    ScoreMatrix,
    load,
    read_run_dir,
    read_table,
    to_long,
    to_square,
)
from xlcl.schedules import INDEPENDENT, JOINT, SEQUENTIAL


def write_run(
    root: Path, matrix: ScoreMatrix, run_id: str, status: str = "done", **config: Any
) -> Path:
    """A run directory as docs/run-directory.md describes it (scores and manifest)."""
    path = root / run_id
    path.mkdir(parents=True)
    manifest = {
        "run_id": run_id,
        "status": status,
        "config": {"method": matrix.method, "rank": None, "model": "tiny", **config},
        "order": list(matrix.order),
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    table = to_long(matrix)
    table["precision"] = table["score"]
    table.to_parquet(path / "scores.parquet")
    if status == "done":
        (path / "DONE").write_text("")
    return path


def test_run_directory(tmp_path: Path, seq4: ScoreMatrix) -> None:
    path = write_run(tmp_path, seq4, "0123456789ab", rank=32)
    (run,) = load([path]).runs
    assert run.run_id == "0123456789ab"
    assert run.label == "shared-lora r32 tiny"
    assert run.matrix.method == "shared-lora" and run.matrix.order == seq4.order
    np.testing.assert_array_equal(run.matrix.scores, seq4.scores)


def test_a_strategys_runs_are_labelled_apart_from_the_plain_methods(
    tmp_path: Path, seq4: ScoreMatrix
) -> None:
    replay = {"name": "replay", "mem_size": 100}
    paths = [
        write_run(tmp_path, seq4, "000000000001"),
        write_run(tmp_path, seq4, "000000000002", strategy=replay),
        write_run(tmp_path, seq4, "000000000003", strategy={**replay, "mem_size": 0}),
    ]
    labels = [run.label for run in load(paths).runs]
    assert labels == [
        "shared-lora tiny",
        "shared-lora tiny replay mem_size=100",
        "shared-lora tiny replay mem_size=0",
    ]


def test_an_old_run_directory_reads_as_slot_filling_by_its_method(
    tmp_path: Path, mono3: ScoreMatrix
) -> None:
    # no score column (f1 is the score), no schedule/task/metric in the manifest, dev_f1
    path = write_old_run_dir(tmp_path, "old", mono3, "nonshared-lora", rank=8)
    assert "score" not in pd.read_parquet(path / "scores.parquet").columns
    run = read_run_dir(path)
    assert run.matrix.schedule == INDEPENDENT  # nonshared-lora's, from xlcl.methods
    assert (run.matrix.metric, run.task) == ("span F1", "massive-slots")
    assert run.label == "nonshared-lora r8 tiny"  # as before tasks: the task is not named
    np.testing.assert_array_equal(run.matrix.scores, mono3.scores)


def test_a_new_run_directory_reads_its_score_schedule_and_metric(tmp_path: Path) -> None:
    accuracy = [[0.2, 0.1, 0.3], [0.9, 0.4, 0.5], [0.7, 0.95, 0.6], [0.6, 0.9, 0.97]]
    matrix = ScoreMatrix(("a", "b", "c"), accuracy, SEQUENTIAL, INTENT)
    # the manifest's schedule decides: the method's name need not be a preset
    path = write_new_run_dir(tmp_path, "new", matrix, "my-strategy")
    stored = pd.read_parquet(path / "scores.parquet")
    assert list(stored.columns[:4]) == ["step", "trained_locale", "eval_locale", "score"]
    assert stored["f1"].isna().all()
    run = read_run_dir(path)
    assert run.matrix.schedule == SEQUENTIAL and run.matrix.metric == "intent accuracy"
    assert run.task == "massive-intent"
    assert run.label == "my-strategy tiny massive-intent"  # never averaged with slot runs
    np.testing.assert_array_equal(run.matrix.scores, accuracy)


def test_a_manifest_schedule_must_be_known(tmp_path: Path, multi3: ScoreMatrix) -> None:
    path = write_new_run_dir(tmp_path, "new", multi3, "multi", task="massive-slots")
    assert read_run_dir(path).matrix.schedule == JOINT
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "schedule": "jiont"}))
    with pytest.raises(MetricsInputError, match="unknown schedule 'jiont'; did you mean 'joint'"):
        read_run_dir(path)


def test_multi_run_directory_takes_the_manifest_order(tmp_path: Path, multi3: ScoreMatrix) -> None:
    path = write_run(tmp_path, multi3, "multi1")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["order"] = ["c", "b", "a"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    (run,) = load([path]).runs
    assert run.matrix.order == ("c", "b", "a")
    np.testing.assert_array_equal(run.matrix.scores[1], [0.3, 0.9, 0.6])


def test_sweep_finds_runs_at_any_depth_and_skips_unfinished(
    tmp_path: Path, seq3: ScoreMatrix, seq3_other_order: ScoreMatrix
) -> None:
    write_run(tmp_path / "vanilla" / "order1", seq3, "run1")
    write_run(tmp_path / "x", seq3_other_order, "run2")
    write_run(tmp_path, seq3, "run3", status="running")
    loaded = load([tmp_path])
    assert sorted(r.run_id for r in loaded.runs) == ["run1", "run2"]
    assert [(p.name, why) for p, why in loaded.skipped] == [
        ("run3", "run not finished (status 'running')")
    ]


def test_unfinished_run_directory_is_an_error(tmp_path: Path, seq3: ScoreMatrix) -> None:
    path = write_run(tmp_path, seq3, "run1", status="failed")
    with pytest.raises(MetricsInputError, match="run1: run not finished"):
        load([path])


def test_empty_sweep_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MetricsInputError, match="no run directory"):
        load([tmp_path])


def test_duplicate_run_ids(tmp_path: Path, seq3: ScoreMatrix) -> None:
    path = write_run(tmp_path, seq3, "run1")
    with pytest.raises(MetricsInputError, match="'run1' appears twice"):
        load([path, path])


def test_long_csv_and_parquet_with_runs(
    tmp_path: Path, seq3: ScoreMatrix, seq3_other_order: ScoreMatrix
) -> None:
    table = pd.concat(
        [to_long(seq3).assign(run="o1"), to_long(seq3_other_order).assign(run="o2")]
    ).assign(method="vanilla")
    table.to_csv(tmp_path / "scores.csv", index=False)
    table.to_parquet(tmp_path / "scores.parquet")
    for name in ("scores.csv", "scores.parquet"):
        runs = read_table(tmp_path / name)
        assert [(r.run_id, r.label, r.matrix.order) for r in runs] == [
            ("o1", "vanilla", ("a", "b", "c")),
            ("o2", "vanilla", ("c", "a", "b")),
        ]
        np.testing.assert_array_equal(runs[1].matrix.scores, seq3_other_order.scores)


def test_long_table_schedule_from_its_schedule_or_method_column(
    tmp_path: Path, mono3: ScoreMatrix
) -> None:
    to_long(mono3).assign(method="mono").to_csv(tmp_path / "by_method.csv", index=False)
    named = to_long(mono3).assign(method="mine", schedule="independent", metric=INTENT)
    named.to_csv(tmp_path / "by_schedule.csv", index=False)
    (by_method,) = read_table(tmp_path / "by_method.csv")
    (by_schedule,) = read_table(tmp_path / "by_schedule.csv")
    assert by_method.matrix.schedule == by_schedule.matrix.schedule == INDEPENDENT
    assert (by_method.matrix.metric, by_schedule.matrix.metric) == ("span F1", INTENT)
    assert by_schedule.label == "mine"


def test_long_table_without_run_column_is_one_run(tmp_path: Path, seq3: ScoreMatrix) -> None:
    to_long(seq3).to_csv(tmp_path / "one.csv", index=False)
    (run,) = read_table(tmp_path / "one.csv")
    assert (run.run_id, run.label, run.matrix.method) == ("one.csv", "unspecified", None)


def test_square_csv_with_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "square.csv"
    path.write_text("step,en-US,de-DE\n0,0.1,0.2\n1,0.5,\n2,0.4,0.6\n")
    (run,) = read_table(path)
    assert run.matrix.order == ("en-US", "de-DE")
    np.testing.assert_array_equal(run.matrix.scores, [[0.1, 0.2], [0.5, np.nan], [0.4, 0.6]])


@pytest.mark.parametrize("bom", ["", "\ufeff"])
def test_square_csv_read_with_or_without_a_byte_order_mark(tmp_path: Path, bom: str) -> None:
    path = tmp_path / "square.csv"  # spreadsheets save "CSV UTF-8" with a BOM
    path.write_text(bom + "step,en-US,de-DE\n0,0.1,0.2\n1,0.5,0.3\n2,0.4,0.6\n", encoding="utf-8")
    (run,) = read_table(path)
    assert run.matrix.order == ("en-US", "de-DE")
    np.testing.assert_array_equal(run.matrix.scores, [[0.1, 0.2], [0.5, 0.3], [0.4, 0.6]])


def test_square_and_long_files_agree(tmp_path: Path, seq4: ScoreMatrix) -> None:
    to_square(seq4).to_csv(tmp_path / "sq.csv", index=False)
    to_long(seq4).to_csv(tmp_path / "long.csv", index=False)
    (square,) = read_table(tmp_path / "sq.csv")
    (long,) = read_table(tmp_path / "long.csv")
    np.testing.assert_array_equal(square.matrix.scores, long.matrix.scores)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("r.csv", "step,a,b\n0,0.1,0.2\n1,0.5\n2,0.4,0.6\n", "line 3: ragged matrix: 2 cells"),
        ("r.csv", "step,a,b\n0,0.1,0.2\n2,0.4,0.6\n", "steps 0..2"),
        ("r.csv", "step,a,b\n0,0.1,0.2\n1,0.5,1.5\n2,0.4,0.6\n", r"outside \[0, 1\]"),
        ("r.csv", "", "empty file"),
        ("r.txt", "step,a\n0,0.1\n1,0.2\n", "unknown file type '.txt'"),
        ("r.csv", "step,trained_locale,eval_locale,f1\n0,,a,0.1\n1,a,a,0.5\n1,a,a,0.6\n", "dup"),
    ],
)
def test_invalid_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MetricsInputError, match=message) as err:
        load([path])
    assert str(err.value).startswith(str(path))


def test_run_column_names_the_bad_run(tmp_path: Path, seq3: ScoreMatrix) -> None:
    table = to_long(seq3).assign(run="o1")
    table.loc[len(table) - 1, "score"] = 2.0
    table.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(MetricsInputError, match=r"bad.csv: run o1: span F1 outside"):
        read_table(tmp_path / "bad.csv")


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(MetricsInputError, match="no such file"):
        load([tmp_path / "absent.csv"])


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(MetricsInputError, match=r"x.parquet"):
        load([tmp_path / "x.parquet"])
