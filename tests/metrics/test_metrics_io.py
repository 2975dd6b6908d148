"""Reading runs: run directories, sweeps, long and square tables, and their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from xlcl.metrics import MetricsInputError, ScoreMatrix, load, read_table, to_long, to_square


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
    table["precision"] = table["f1"]
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
    np.testing.assert_array_equal(run.matrix.f1, seq4.f1)


def test_multi_run_directory_takes_the_manifest_order(tmp_path: Path, multi3: ScoreMatrix) -> None:
    path = write_run(tmp_path, multi3, "multi1")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["order"] = ["c", "b", "a"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    (run,) = load([path]).runs
    assert run.matrix.order == ("c", "b", "a")
    np.testing.assert_array_equal(run.matrix.f1[1], [0.3, 0.9, 0.6])


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
        np.testing.assert_array_equal(runs[1].matrix.f1, seq3_other_order.f1)


def test_long_table_without_run_column_is_one_run(tmp_path: Path, seq3: ScoreMatrix) -> None:
    to_long(seq3).to_csv(tmp_path / "one.csv", index=False)
    (run,) = read_table(tmp_path / "one.csv")
    assert (run.run_id, run.label, run.matrix.method) == ("one.csv", "unspecified", None)


def test_square_csv_with_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "square.csv"
    path.write_text("step,en-US,de-DE\n0,0.1,0.2\n1,0.5,\n2,0.4,0.6\n")
    (run,) = read_table(path)
    assert run.matrix.order == ("en-US", "de-DE")
    np.testing.assert_array_equal(run.matrix.f1, [[0.1, 0.2], [0.5, np.nan], [0.4, 0.6]])


@pytest.mark.parametrize("bom", ["", "\ufeff"])
def test_square_csv_read_with_or_without_a_byte_order_mark(tmp_path: Path, bom: str) -> None:
    path = tmp_path / "square.csv"  # spreadsheets save "CSV UTF-8" with a BOM
    path.write_text(bom + "step,en-US,de-DE\n0,0.1,0.2\n1,0.5,0.3\n2,0.4,0.6\n", encoding="utf-8")
    (run,) = read_table(path)
    assert run.matrix.order == ("en-US", "de-DE")
    np.testing.assert_array_equal(run.matrix.f1, [[0.1, 0.2], [0.5, 0.3], [0.4, 0.6]])


def test_square_and_long_files_agree(tmp_path: Path, seq4: ScoreMatrix) -> None:
    to_square(seq4).to_csv(tmp_path / "sq.csv", index=False)
    to_long(seq4).to_csv(tmp_path / "long.csv", index=False)
    (square,) = read_table(tmp_path / "sq.csv")
    (long,) = read_table(tmp_path / "long.csv")
    np.testing.assert_array_equal(square.matrix.f1, long.matrix.f1)


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
    table.loc[len(table) - 1, "f1"] = 2.0
    table.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(MetricsInputError, match=r"bad.csv: run o1: F1 outside"):
        read_table(tmp_path / "bad.csv")


def test_missing_input(tmp_path: Path) -> None:
    with pytest.raises(MetricsInputError, match="no such file"):
        load([tmp_path / "absent.csv"])


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(MetricsInputError, match=r"x.parquet"):
        load([tmp_path / "x.parquet"])
