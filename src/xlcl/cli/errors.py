"""How every command reports bad input: one line on stderr and exit code 2."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `message` as an error and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
