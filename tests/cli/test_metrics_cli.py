"""`xlcl metrics` through typer's CliRunner, on a one-command app around the function."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from metrics.run_dirs import INTENT, write_new_run_dir, write_old_run_dir
from xlcl.cli import metrics as cli
from xlcl.metrics import ScoreMatrix, to_long, to_square
from xlcl.schedules import SEQUENTIAL

nan = np.nan
FACTS = {
    "en-US": SimpleNamespace(script="Latn", latin=True, family="Indo-European", vitality="high"),
    "de-DE": SimpleNamespace(script="Latn", latin=True, family="Indo-European", vitality="high"),
    "ja-JP": SimpleNamespace(script="Jpan", latin=False, family="Japonic", vitality="high"),
    "sw-KE": SimpleNamespace(script="Latn", latin=True, family="Niger-Congo", vitality="low"),
}
# order en-US de-DE ja-JP; the same numbers as tests/metrics/conftest.py's seq3
SEQ3 = np.array([[0.1, 0.2, 0.3], [0.5, 0.3, 0.2], [0.4, 0.6, nan], [0.3, 0.5, 0.7]])
ORDER = ("en-US", "de-DE", "ja-JP")
ACCURACY = np.array([[0.2, 0.1, 0.3], [0.9, 0.4, 0.5], [0.7, 0.95, 0.6], [0.6, 0.9, 0.97]])


@pytest.fixture(autouse=True)
def locale_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "known_locales", lambda: FACTS)


def invoke(*args: str) -> Any:
    app = typer.Typer()
    app.command()(cli.metrics)
    return CliRunner().invoke(app, [*args])


@pytest.fixture
def square(tmp_path: Path) -> Path:
    path = tmp_path / "sq.csv"
    to_square(ScoreMatrix(order=ORDER, scores=SEQ3)).to_csv(path, index=False)
    return path


def strict_json(text: str) -> Any:
    def no_nan(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=no_nan)


def test_json_of_one_square_table(square: Path) -> None:
    result = invoke(str(square), "--json", "--hops", "2")
    assert result.exit_code == 0, result.output
    doc = strict_json(result.stdout)
    assert set(doc) == {"runs", "aggregate"}
    run = doc["runs"]["sq.csv"]
    assert run["method"] is None and run["order"] == list(ORDER)
    assert run["final_score"] == pytest.approx(0.5)
    assert run["cbt"] == pytest.approx(-0.15)  # ((.3 - .5) + (.5 - .6)) / 2
    assert run["cft"] == pytest.approx(0.25)
    assert run["forgetting"] == pytest.approx(0.15)
    assert run["learning_score"] == pytest.approx(0.6)
    assert run["avg_score"] == pytest.approx([None, 0.5, 0.5, 0.5])
    assert run["perf_shift"][:2] == [None, None]
    assert run["mft"]["en-US"][0] is None and run["mft"]["en-US"][1] == pytest.approx(0.1)
    assert len(run["mbt"]["ja-JP"]) == 3
    assert run["fwt"] == pytest.approx([0.1, -0.1])
    agg = doc["aggregate"]["unspecified"]
    assert agg["n_runs"] == 1 and agg["scalars"]["cbt"]["std"] is None
    assert agg["locales"]["de-DE"]["final_score"] == {"mean": pytest.approx(0.5), "n": 1}
    latin = agg["groups"]["latin"]
    # Latin: en-US .3, de-DE .5 -> .4; non-Latin: ja-JP .7
    assert latin["Latin"]["final_score"] == pytest.approx(0.4)
    assert latin["Latin"]["n_locales"] == 2
    assert latin["non-Latin"]["final_score"] == pytest.approx(0.7)
    assert set(agg["groups"]) == {"vitality", "latin", "script", "family"}


def test_json_aggregates_orders_by_method(tmp_path: Path) -> None:
    runs = [
        to_long(ScoreMatrix(order=ORDER, scores=SEQ3)).assign(run="o1"),
        to_long(ScoreMatrix(order=ORDER[::-1], scores=SEQ3)).assign(run="o2"),
    ]
    path = tmp_path / "runs.csv"
    pd.concat(runs).assign(method="vanilla").to_csv(path, index=False)
    doc = strict_json(invoke(str(path), "--json").stdout)
    assert set(doc["runs"]) == {"o1", "o2"}
    agg = doc["aggregate"]["vanilla"]
    assert agg["n_runs"] == 2 and agg["runs"] == ["o1", "o2"]
    assert agg["scalars"]["cbt"] == {"mean": pytest.approx(-0.15), "std": 0.0, "n": 2}
    # en-US is last in o2: final F1 (.3 + .7) / 2, from two cells
    assert agg["locales"]["en-US"]["final_score"] == {"mean": pytest.approx(0.5), "n": 2}
    assert len(agg["locales"]["en-US"]["mft"]["mean"]) == 11  # hops 0..10 by default


def test_user_grouping(square: Path, tmp_path: Path) -> None:
    groups = tmp_path / "groups.csv"
    groups.write_text("locale,group\nen-US,G1\nja-JP,G1\nsw-KE,G2\n")
    args = (str(square), "--json", "--hops", "2", "--groups", str(groups))
    agg = strict_json(invoke(*args).stdout)["aggregate"]["unspecified"]
    # sw-KE is not in the run, so G2 does not appear; G1 = en-US (position 1), ja-JP (3)
    (g1,) = agg["groups"]["user"].values()
    assert list(agg["groups"]["user"]) == ["G1"] and g1["n_locales"] == 2
    assert isinstance(g1["n_locales"], int)
    assert g1["final_score"] == pytest.approx(0.5)  # (.3 + .7) / 2
    assert g1["perf_shift"] == pytest.approx(-0.1)  # en-US has none; ja-JP -.1
    assert g1["learning_gain"] == pytest.approx(0.4)  # en-US .4; ja-JP NaN
    assert g1["mft"] == pytest.approx([-0.1, 0.1, -0.1])  # h>=1 from en-US only
    assert g1["mbt"] == pytest.approx([-0.1, -0.1, -0.1])
    assert agg["ungrouped"]["user"] == ["de-DE"]


def test_readable_tables(square: Path) -> None:
    result = invoke(str(square))
    assert result.exit_code == 0, result.output
    for text in ("Runs", "sq.csv", "-0.1500", "per locale", "by latin", "non-Latin"):
        assert text in result.stdout
    assert "final span F1" in result.stdout  # a table without a metric: span F1


def test_old_and_new_run_directories_each_name_their_metric(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_old_run_dir(runs, "old", ScoreMatrix(ORDER, SEQ3), "vanilla")
    write_new_run_dir(runs, "new", ScoreMatrix(ORDER, ACCURACY, SEQUENTIAL, INTENT), "vanilla")
    result = invoke(str(runs), "--json")
    assert result.exit_code == 0, result.output
    doc = strict_json(result.stdout)
    old, new = doc["runs"]["old"], doc["runs"]["new"]
    assert (old["schedule"], old["task"], old["metric"]) == (
        "sequential",
        "massive-slots",
        "span F1",
    )
    assert (new["schedule"], new["task"], new["metric"]) == (
        "sequential",
        "massive-intent",
        "intent accuracy",
    )
    assert old["final_score"] == pytest.approx(0.5)  # mean(.3, .5, .7), read from f1
    assert new["final_score"] == pytest.approx((0.6 + 0.9 + 0.97) / 3)  # from score
    assert new["cbt"] == pytest.approx(((0.6 - 0.9) + (0.9 - 0.95)) / 2)
    # two tasks, two labels: never averaged together
    assert doc["aggregate"]["vanilla tiny"]["metric"] == "span F1"
    assert doc["aggregate"]["vanilla tiny massive-intent"]["metric"] == "intent accuracy"

    app = typer.Typer()
    app.command()(cli.metrics)
    text = CliRunner().invoke(app, [str(runs)], env={"COLUMNS": "200"}).stdout
    assert "final intent accuracy" in text and "learning intent accuracy" in text
    assert "final span F1" in text
    assert "F1" not in text.split("vanilla tiny massive-intent: mean")[1].split("vanilla tiny:")[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("step,en-US\n0,0.1\n1,1.7\n", "F1 outside [0, 1]"),
        ("step,en-US,de-DE\n0,0.1,0.1\n1,0.5\n2,0.4,0.6\n", "ragged matrix"),
    ],
)
def test_invalid_input_exits_2_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = invoke(str(path), "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    result = invoke(str(tmp_path / "absent.csv"))
    assert result.exit_code == 2 and "no such file" in result.stderr
    (tmp_path / "x.json").write_text("{}")
    result = invoke(str(tmp_path / "x.json"))
    assert result.exit_code == 2 and "unknown file type" in result.stderr


def test_unknown_locale_in_grouping_file(square: Path, tmp_path: Path) -> None:
    groups = tmp_path / "groups.csv"
    groups.write_text("locale,group\nen-US,G1\nxx-XX,G2\n")
    result = invoke(str(square), "--groups", str(groups))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {groups}:3: unknown locale 'xx-XX'"


def test_sweep_reports_skipped_runs(tmp_path: Path) -> None:
    run = tmp_path / "sweep" / "abc"
    run.mkdir(parents=True)
    manifest = {"run_id": "abc", "status": "running", "config": {}, "order": list(ORDER)}
    (run / "manifest.json").write_text(json.dumps(manifest))
    done = tmp_path / "sweep" / "def"
    done.mkdir()
    manifest = {
        "run_id": "def",
        "status": "done",
        "config": {"method": "vanilla"},
        "order": list(ORDER),
    }
    (done / "manifest.json").write_text(json.dumps(manifest))
    to_long(ScoreMatrix(order=ORDER, scores=SEQ3)).to_parquet(done / "scores.parquet")
    (done / "DONE").write_text("")
    result = invoke(str(tmp_path / "sweep"), "--json")
    assert result.exit_code == 0, result.output
    assert list(strict_json(result.stdout)["runs"]) == ["def"]
    assert "skipped" in result.stderr and "status 'running'" in result.stderr


def test_registered_in_the_xlcl_app() -> None:
    try:
        from xlcl.cli import app
    except ImportError as err:  # another command's module may be mid-rewrite
        pytest.skip(f"xlcl.cli does not import: {err}")
    result = CliRunner().invoke(app, ["metrics", "--help"])
    assert result.exit_code == 0 and "--hops" in result.stdout
