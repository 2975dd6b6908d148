"""`xlcl report INPUT... --out DIR`: the paper's tables and figures in one HTML report.

INPUT is a run directory, a sweep directory or a score table (see docs/reports.md).
Unfinished runs are included with the steps they have. Inputs with nothing to report,
or unreadable ones, exit with code 2 and a one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xlcl.cli.errors import fail
from xlcl.metrics import DEFAULT_HOPS


def report(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Run directories, sweep directories or score tables (CSV, Parquet)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Directory for report.html, tables/ and figures/.")
    ],
    hops: Annotated[
        int, typer.Option("--hops", min=1, help="Largest hop distance H of Figure 5.")
    ] = DEFAULT_HOPS,
) -> None:
    """Tables (Markdown, LaTeX, CSV), figures (PNG, PDF) and one self-contained HTML file."""
    try:  # matplotlib and Jinja2 load only for this command (the `report` extra)
        from xlcl.reports import ReportInputError, build_report
    except ModuleNotFoundError as err:
        fail(f"xlcl report needs {err.name}: pip install 'xlcl[report]'")
    try:
        files = build_report(inputs, out, hops=hops)
    except ReportInputError as err:
        fail(str(err))
    for note in files.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"wrote {files.html} ({files.n_runs} run(s), {len(files.tables)} table files, "
        f"{len(files.figures)} figure files)"
    )
