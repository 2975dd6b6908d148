"""`xlcl sweep`, `xlcl sweep status` and `xlcl query` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from xlcl.cli import query as query_cli
from xlcl.cli import sweep as sweep_cli
from xlcl.sweep import RunState, load_sweep
from xlcl.sweep.driver import write_sweep_file
from xlcl.sweep.state import begin_attempt, end_attempt

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "configs" / "sweeps" / "paper.yaml"


def invoke(*args: str):
    app = typer.Typer()  # as the lead registers them in xlcl.cli
    app.add_typer(sweep_cli.app, name="sweep")
    app.command("query")(query_cli.query)
    return CliRunner().invoke(app, [*args])


def test_dry_run_json_lists_the_paper_grid_with_costs(tmp_path):
    result = invoke("sweep", str(PAPER), "--dry-run", "--json", "--results", str(tmp_path))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    runs = document["runs"]
    assert len(runs) == 80
    assert {"run_id", "method", "rank", "order", "model"} <= set(runs[0])
    assert {run["order"] for run in runs} == {1, 2, 3, 4, 5}
    assert {(run["method"], run["rank"]) for run in runs if "e5" in run["model"]} == {
        ("vanilla", None), ("shared-lora", 32), ("nonshared-lora", 32), ("multi", None)
    }  # fmt: skip
    assert all(run["state"] == "queued" and run["cost"]["gpu_hours"] > 0 for run in runs)
    assert document["total"]["to_run"] == 80
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_dry_run_table_and_explicit_run_command(tmp_path):
    result = invoke("sweep", "run", str(PAPER), "--dry-run", "--results", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "to run: 80 of 80 runs" in " ".join(result.stdout.split())


def test_a_bad_sweep_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": {"model": "m", "method": "vanila"}}))
    result = invoke("sweep", str(path), "--dry-run")
    assert result.exit_code == 2
    assert "did you mean 'vanilla'" in result.output


@pytest.fixture
def results(tmp_path):
    """A results directory by hand: one run done with scores, one failed, one queued."""
    path = tmp_path / "s.yaml"
    base = {"model": "m", "method": "vanilla", "order": ["en-US", "de-DE"]}
    path.write_text(yaml.safe_dump({"base": base, "grid": {"train.seed": [1, 2, 3]}}))
    sweep = load_sweep(path, results=tmp_path / "results")
    write_sweep_file(sweep)
    done, failed, _ = (sweep.results / run.run_id for run in sweep.runs)
    begin_attempt(done, "local", None)
    end_attempt(done, RunState.DONE, None, "local")
    (done / "DONE").write_text("")
    scores = pd.DataFrame(
        {"step": [0, 0, 1, 1, 2, 2], "eval_locale": ["en-US", "de-DE"] * 3,
         "f1": [0.1, 0.2, 0.5, 0.3, 0.4, 0.6]}
    )  # fmt: skip
    scores.to_parquet(done / "scores.parquet")
    begin_attempt(failed, "local", None)
    end_attempt(failed, RunState.FAILED, "DataError: no such file", "local")
    return sweep


def test_status_shows_states_progress_and_errors(results):
    table = invoke("sweep", "status", str(results.results))
    assert table.exit_code == 0, table.output
    assert "DataError: no such file" in table.stdout
    assert "1 done, 1 failed, 1 queued" in table.stdout
    document = json.loads(invoke("sweep", "status", str(results.results), "--json").stdout)
    states = [(run["state"], run["steps_done"], run["steps_total"]) for run in document["runs"]]
    assert states == [("done", 2, 2), ("failed", None, 2), ("queued", None, 2)]


def test_status_adds_up_the_time_of_the_attempts(results):
    failed = results.results / results.runs[1].run_id / "sweep-state.json"
    state = json.loads(failed.read_text())
    state["attempts"][0].update(
        started_at="2026-12-02T10:00:00+00:00", ended_at="2026-12-02T10:45:00+00:00"
    )
    failed.write_text(json.dumps(state))
    table = invoke("sweep", "status", str(results.results))
    # The done run's attempt took under a second: 0:45 in all, all of it failed.
    assert "time: 0:45 run-hours in 2 attempt(s), 0:45 of it in attempts interrupted or failed" in (
        " ".join(table.stdout.split())
    )
    document = json.loads(invoke("sweep", "status", str(results.results), "--json").stdout)
    times = [(run["seconds"], run["seconds_cut"]) for run in document["runs"]]
    assert times[1:] == [(2700, 2700), (0, 0)] and times[0][0] < 5 and times[0][1] == 0


def test_status_of_a_missing_directory_fails(tmp_path):
    assert invoke("sweep", "status", str(tmp_path / "nope")).exit_code == 2


def test_query_table_json_and_csv(results):
    sql = (
        "SELECT run_id, state, avg(f1) AS f1 FROM runs LEFT JOIN scores USING (run_id) "
        "GROUP BY ALL ORDER BY state"
    )
    rows = json.loads(invoke("query", str(results.results), sql, "--json").stdout)
    assert [(row["state"], row["f1"]) for row in rows] == [
        ("done", pytest.approx(0.35)), ("failed", None), ("queued", None)
    ]  # fmt: skip
    csv = invoke("query", str(results.results), sql, "--csv").stdout.splitlines()
    assert csv[0] == "run_id,state,f1" and len(csv) == 4
    table = invoke("query", str(results.results), "SELECT count(*) AS n FROM scores")
    assert table.exit_code == 0 and "6" in table.stdout
    bad = invoke("query", str(results.results), "SELECT nope FROM runs")
    assert bad.exit_code == 2 and "nope" in bad.output


def test_query_of_one_run_directory_lists_that_run_only(tmp_path):
    for run_id in ("aaaaaaaaaaa1", "aaaaaaaaaaa2"):  # two runs side by side, no sweep file
        directory = tmp_path / "runs" / run_id
        directory.mkdir(parents=True)
        manifest = {"run_id": run_id, "status": "done", "order": ["en-US", "de-DE"]}
        (directory / "manifest.json").write_text(json.dumps(manifest))
        (directory / "DONE").write_text("")
    one = tmp_path / "runs" / "aaaaaaaaaaa1"
    sql = "SELECT run_id FROM runs ORDER BY run_id"
    assert invoke("query", str(one), sql, "--csv").stdout.split() == ["run_id", "aaaaaaaaaaa1"]
    both = invoke("query", str(tmp_path / "runs"), sql, "--csv").stdout.split()
    assert both == ["run_id", "aaaaaaaaaaa1", "aaaaaaaaaaa2"]


@pytest.mark.parametrize("damaged", ["scores.parquet", "sweep-state.json"])
def test_a_damaged_run_file_is_a_one_line_error_naming_it(results, damaged):
    done = results.results / results.runs[0].run_id
    (done / damaged).write_bytes(b"not what it should be")
    for command in (["sweep", "status"], ["query"]):
        args = [*command, str(results.results)] + (["SELECT 1"] if command == ["query"] else [])
        outcome = invoke(*args)
        assert outcome.exit_code == 2, outcome.output
        assert f"{done / damaged}: cannot be read" in outcome.output
        assert "Traceback" not in outcome.output
