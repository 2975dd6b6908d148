"""`xlcl run CONFIG.yaml [--set key=value ...]`: one experiment, start to finish."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xlcl.cli.errors import fail


def run(
    config: Annotated[Path, typer.Argument(help="YAML config of the run")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a field, e.g. --set train.epochs=3"),
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="print the resolved config and exit")
    ] = False,
) -> None:
    """Train and score one run; print its run directory."""
    from xlcl.config import ConfigError, load_config
    from xlcl.data import DataError

    try:
        resolved = load_config(config, overrides)
    except ConfigError as error:
        fail(str(error))
    if print_config:
        import yaml

        typer.echo(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False))
        return
    from transformers.utils import logging as transformers_logging

    from xlcl.progress import ConsoleReporter
    from xlcl.protocol import run as run_experiment

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()

    try:
        directory = run_experiment(resolved, ConsoleReporter())
    except DataError as error:
        fail(str(error))
    typer.echo(str(directory))
