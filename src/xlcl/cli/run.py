"""`xlcl run CONFIG.yaml [--set key=value ...]` or `xlcl run --resume RUN_DIR`.

CONFIG is a YAML file or the name of a packaged config (``xlcl run paper/vanilla``,
``xlcl run demo/quick/vanilla``); a file on disk wins over a name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from xlcl.cli.errors import fail

if TYPE_CHECKING:
    from xlcl.config import RunConfig


def run(
    config: Annotated[
        Path | None,
        typer.Argument(help="YAML config of the run, or a packaged one's name: paper/vanilla"),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a field, e.g. --set train.epochs=3"),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="continue this run directory from its last checkpoint"),
    ] = None,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="use torch's deterministic algorithms only")
    ] = False,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="print the resolved config and exit")
    ] = False,
    group_with: Annotated[
        list[Path] | None,
        typer.Option(
            "--group-with",
            help="train this run's config too, as one group with CONFIG over one encoder "
            "(SHARED or MULTI LoRA sharing model, data, vocabulary, precision; repeatable; "
            "--set applies to every run)",
        ),
    ] = None,
) -> None:
    """Train and score one run (or resume one); print its run directory.

    A run whose directory already exists resumes from its newest complete checkpoint.
    """
    from xlcl.catalog import find_config
    from xlcl.config import ConfigError, config_diff, load_config, with_overrides
    from xlcl.data import DataError
    from xlcl.store import stored_config

    if config is None and resume is None:
        fail("give a CONFIG file, or --resume RUN_DIR")
    if group_with and (resume is not None or print_config):
        fail("--group-with trains new or unfinished runs: not with --resume or --print-config")
    if deterministic:
        overrides = [*(overrides or []), "train.deterministic=true"]
    try:
        if config is not None:
            config = find_config(config)
        if resume is None:
            resolved = load_config(config, overrides)
        else:
            resolved = stored_config(resume)
            if resolved.run_id != resume.name:
                fail(f"{resume}: its config hashes to run id {resolved.run_id}, not its name")
            asked = (
                load_config(config, overrides)
                if config is not None
                else with_overrides(resolved.model_dump(mode="json"), overrides)
            )
            changes = config_diff(resolved, asked)
            if changes:
                listed = "\n  ".join(changes)
                fail(f"{resume} was run with another config; refusing to resume:\n  {listed}")
            resolved = resolved.model_copy(update={"tracking": asked.tracking})  # not in the id
    except ConfigError as error:
        fail(str(error))
    if print_config:
        import yaml

        typer.echo(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False))
        return
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    from xlcl.progress import ConsoleReporter
    from xlcl.protocol import run as run_experiment

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    # The hub's retry warnings would precede a model's one-line load error.
    hub_logging.set_verbosity_error()

    if group_with:
        _run_group(resolved, group_with, overrides or [])
        return
    try:
        directory = run_experiment(resolved, ConsoleReporter())
    except (ConfigError, DataError) as error:  # ConfigError: what only the task can check
        fail(str(error))
    typer.echo(str(directory))


def _run_group(first: RunConfig, others: list[Path], overrides: list[str]) -> None:
    """`first` and the runs of `others` trained as one group; their run directories."""
    from xlcl.catalog import find_config
    from xlcl.config import ConfigError, load_config
    from xlcl.data import DataError
    from xlcl.progress import ConsoleReporter
    from xlcl.schedules.grouped import GroupRunsFailed, run_group

    try:
        configs = [first, *(load_config(find_config(path), overrides) for path in others)]
        directories = run_group(configs, ConsoleReporter())
    except (ConfigError, DataError, GroupRunsFailed) as error:
        fail(str(error))
    for directory in directories:
        typer.echo(str(directory))
