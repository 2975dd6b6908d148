"""The ``xlcl`` command line: it only parses arguments and calls the library.

Each command group lives in its own module of this package and is registered here.
"""

from __future__ import annotations

import typer

from xlcl.cli import data, demo, metrics, model, params, plan, query, report, run, sweep

app = typer.Typer(
    name="xlcl",
    help="Cross-lingual continual learning: train locales one after another, measure the loss.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(model.app, name="model")
app.command("demo")(demo.demo)
app.command("run")(run.run)
app.command("params")(params.params)
app.command("metrics")(metrics.metrics)
app.command("report")(report.report)
app.add_typer(sweep.app, name="sweep")
app.command("query")(query.query)
app.add_typer(plan.app, name="plan")


def main() -> None:
    """Console-script entry point."""
    app()
