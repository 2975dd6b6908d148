"""`xlcl report` through typer's CliRunner, on a one-command app around the function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from reports.report_runs import ORDER_A, ORDER_B, VANILLA_A, VANILLA_B, write_run
from xlcl.cli import report as cli

UNKNOWN = "test/offline-unknown"


def invoke(*args: str) -> Any:
    app = typer.Typer()
    app.command()(cli.report)
    return CliRunner().invoke(app, [*args])


def test_report_writes_html_tables_and_figures(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    write_run(sweep, "a", "vanilla", ORDER_A, VANILLA_A, model=UNKNOWN)
    write_run(
        sweep,
        "b",
        "vanilla",
        ORDER_B,
        VANILLA_B,
        model=UNKNOWN,
        status="running",
        done=False,
        rows=7,
    )
    out = tmp_path / "out"
    result = invoke(str(sweep), "--out", str(out), "--hops", "2")
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.html'} (2 run(s)" in result.stdout
    assert "note: 1 unfinished run(s)" in result.stderr
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "tables" / "table1.tex").exists()
    assert (out / "figures" / "fig2_avg_score.pdf").exists()


def test_nothing_to_report_exits_2(tmp_path: Path) -> None:
    write_run(
        tmp_path / "sweep", "a", "vanilla", ORDER_A, VANILLA_A, status="running", done=False, rows=2
    )
    result = invoke(str(tmp_path / "sweep"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: nothing to report: no run with a complete training")
    assert not (tmp_path / "out" / "report.html").exists()


def test_missing_and_empty_inputs_exit_2(tmp_path: Path) -> None:
    result = invoke(str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "no such file or directory" in result.stderr
    (tmp_path / "empty").mkdir()
    result = invoke(str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "no run directory" in result.stderr


def test_out_is_required(tmp_path: Path) -> None:
    assert invoke(str(tmp_path)).exit_code == 2
