"""`xlcl query RESULTS "SQL" [--json | --csv]`: DuckDB SQL over a results directory.

Views: ``runs`` (one row per run), ``scores`` and ``curves`` (every run's tables with a
``run_id`` column); see docs/sweeps.md. Bad SQL or input exits with code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from xlcl.cli.errors import fail


def query(
    results: Annotated[Path, typer.Argument(help="results directory (a sweep's, or any runs)")],
    sql: Annotated[str, typer.Argument(help="SQL over the views runs, scores and curves")],
    json_out: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="print the rows as CSV")] = False,
) -> None:
    """Run SQL (DuckDB) over the runs, scores and curves of a results directory."""
    from xlcl.query import QueryError
    from xlcl.query import query as run_query

    if json_out and csv_out:
        fail("choose one of --json and --csv")
    try:
        frame = run_query(results, sql)
    except QueryError as error:
        fail(str(error))
    if json_out:
        typer.echo(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    elif csv_out:
        typer.echo(frame.to_csv(index=False), nl=False)
    else:
        table = Table(show_lines=False)
        for column in frame.columns:
            table.add_column(str(column))
        for row in frame.itertuples(index=False):
            table.add_row(*[_cell(value) for value in row])
        Console().print(table)


def _cell(value: Any) -> str:
    import pandas as pd

    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        return " ".join(str(item) for item in value)
    return str(value)
