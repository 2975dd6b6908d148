"""`xlcl demo [--out DIR] [--quick] [--seeds N]`: knowledge loss on real MASSIVE, on a laptop CPU.

Runs VANILLA, SHARED LoRA and NON-SHARED LoRA (``configs/demo/``), writes the HTML report
and prints where it is, with final F1, CBT and CFT per method (mean ± std over N seeds).
See ``docs/demo.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from xlcl.cli.errors import fail


def demo(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Results directory; default: the configs' (runs/demo)."),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="The small CI version (configs/demo/quick/, ~2 minutes)."),
    ] = False,
    track: Annotated[
        list[str] | None,
        typer.Option("--track", help="Log the runs and the report to a tracker (repeatable)."),
    ] = None,
    seeds: Annotated[
        int,
        typer.Option("--seeds", help="Run every method with N seeds (42, 43...): mean ± std."),
    ] = 1,
) -> None:
    """Three methods over six locales in minutes: the report, and the loss in one table."""
    try:  # the report needs matplotlib and Jinja2 (the `demo` extra)
        from xlcl.demo import SUMMARY_COLUMNS, run_demo, summary_rows
        from xlcl.reports import ReportInputError
    except ModuleNotFoundError as err:
        fail(f"xlcl demo needs {err.name}: pip install 'xlcl[demo]'")
    from transformers.utils import logging as transformers_logging

    from xlcl.config import ConfigError
    from xlcl.data import DataError
    from xlcl.progress import ConsoleReporter

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    try:
        result = run_demo(
            quick=quick, out=out, new_reporter=ConsoleReporter, tracking=track or (), seeds=seeds
        )
    except (ConfigError, DataError, ReportInputError) as error:
        fail(str(error))
    console = Console()
    table = Table(title=f"xlcl demo: {_clock(time.perf_counter() - started)} wall time")
    for index, column in enumerate(SUMMARY_COLUMNS):
        table.add_column(column, justify="left" if index == 0 else "right")
    for cells in summary_rows(result.summary):
        table.add_row(*cells)
    console.print(table)
    typer.echo(result.measured_on)
    console.print(
        f"F1 points (x100){result.spread}. "
        "CBT < 0: forgetting. CFT > untrained F1 (mean of R[0, ·]): "
        "zero-shot transfer. NON-SHARED LoRA keeps an adapter per locale: CBT 0 by construction."
    )
    typer.echo(f"report: {result.report}")
    typer.echo(f"table: {result.summary_file}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"
