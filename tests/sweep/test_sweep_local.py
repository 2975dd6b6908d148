"""The local process pool end to end, and the results directory the other commands read."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from xlcl.cli import metrics as metrics_cli
from xlcl.cli import sweep as sweep_cli
from xlcl.query import query
from xlcl.sweep.backends.local import LocalBackend

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scenario(run_scenario):
    return run_scenario(lambda results, env: LocalBackend(max_parallel=3, gpus=[]), "local")


def test_a_failed_and_a_killed_run_leave_the_others_to_finish(scenario):
    scenario.check_first_round()


def test_the_rerun_completes_the_sweep_and_resumes_the_killed_run(scenario):
    scenario.check_second_round()


def test_each_attempt_has_its_log_and_the_sweep_lists_its_runs(scenario):
    results = scenario.sweep.results
    logs = sorted(p.name for p in (results / scenario.killed / "logs").iterdir())
    assert logs == ["attempt-1.log", "attempt-2.log"]
    assert "resuming after step 1" in (results / scenario.killed / "logs" / logs[1]).read_text()
    listed = json.loads((results / "sweep.json").read_text())["runs"]
    ids = [scenario.good, scenario.killed, scenario.broken]
    assert [run["run_id"] for run in listed] == ids
    assert listed[1]["method"] == "shared-lora" and listed[1]["rank"] == 4
    assert listed[1]["config"]["output_dir"] == str(results)


def test_xlcl_metrics_reads_the_results_directory(scenario):
    app = metrics_cli_app()
    result = CliRunner().invoke(app, [str(scenario.sweep.results), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary["runs"]) == {scenario.good, scenario.killed}


def test_query_joins_runs_and_scores(scenario):
    frame = query(
        scenario.sweep.results,
        "SELECT r.run_id, r.state, r.method, r.resumed, count(s.step) AS cells "
        "FROM runs r LEFT JOIN scores s USING (run_id) GROUP BY ALL ORDER BY r.method, cells",
    )
    rows = {row.run_id: row for row in frame.itertuples()}
    assert rows[scenario.killed].state == "done" and rows[scenario.killed].resumed == 1
    assert rows[scenario.good].cells == 3 * 2  # steps 0..2 x 2 locales
    assert rows[scenario.broken].state == "failed" and rows[scenario.broken].cells == 0


def test_xlcl_sweep_on_the_same_results_skips_done_runs_and_exits_1_on_failure(
    scenario, sweep_file
):
    app = typer.Typer()
    app.add_typer(sweep_cli.app, name="sweep")
    result = CliRunner().invoke(
        app, ["sweep", str(sweep_file), "--results", str(scenario.sweep.results), "--json"]
    )
    assert result.exit_code == 1  # the broken run fails again
    assert f"{scenario.good} VANILLA: done, skipped" in result.stderr
    runs = {run["run_id"]: run for run in json.loads(result.stdout)["runs"]}
    assert runs[scenario.killed]["state"] == "done"
    assert (runs[scenario.broken]["state"], runs[scenario.broken]["attempts"]) == ("failed", 3)
    assert "config" not in runs[scenario.good]


def metrics_cli_app():
    app = typer.Typer()
    app.command()(metrics_cli.metrics)
    return app


def test_xlcl_report_reads_the_results_directory(scenario, tmp_path):
    from xlcl.cli import app

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(scenario.sweep.results), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert scenario.good in html and scenario.killed in html
    assert (out / "tables" / "table2.csv").is_file()
