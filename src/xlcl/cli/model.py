"""`xlcl model` commands: import offline models, list them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="model commands", no_args_is_help=True)


@app.command("import")
def import_(
    name: Annotated[str, typer.Argument(metavar="NAME", help="offline model, e.g. e5-small")],
    force: Annotated[bool, typer.Option("--force", help="rebuild even if cached")] = False,
) -> None:
    """Build an offline model into the cache and print its path."""
    from xlcl.models import import_model, offline_model

    try:
        model = offline_model(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="NAME") from exc
    typer.echo(import_model(model, force=force))


@app.command("list")
def list_() -> None:
    """Show the offline models, whether their packages are installed and whether cached."""
    from xlcl.models import OFFLINE_MODELS, cached_path
    from xlcl.models.offline import is_complete

    table = Table("name", "installed", "cached", "path", "description")
    for model in OFFLINE_MODELS.values():
        path = cached_path(model)
        table.add_row(
            model.name,
            "yes" if model.available() else "no (pip install 'xlcl[offline]')",
            "yes" if is_complete(path) else "no",
            str(path),
            model.description,
        )
    Console().print(table)
