"""`xlcl params`: trainable parameters of a method (Table 1)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from xlcl.cli.errors import fail
from xlcl.methods import PRESETS


def params(
    method: Annotated[str, typer.Option(help=", ".join(PRESETS))],
    model: Annotated[str, typer.Option(help="model name or local path")] = (
        "FacebookAI/xlm-roberta-base"
    ),
    rank: Annotated[int | None, typer.Option(help="LoRA rank")] = None,
    locales: Annotated[
        int, typer.Option(help="number of locales (one model each in an independent schedule)")
    ] = 52,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the trainable parameters of METHOD on MODEL, counted as in the paper's Table 1."""
    from xlcl.methods import method as make_method
    from xlcl.params import count_parameters

    try:
        count = count_parameters(make_method(method, rank), model, locales)
    except ValueError as error:
        fail(str(error))
    if as_json:
        payload = {
            "trainable": count.trainable,
            "total": count.total,
            "counted_model": count.counted_model,
        }
        typer.echo(json.dumps(payload))
        return
    typer.echo(f"trainable  {count.trainable:>16,d}  ({count.trainable / 1e6:,.2f} M)")
    typer.echo(f"total      {count.total:>16,d}  ({count.total / 1e6:,.2f} M)")
    typer.echo(f"counted    {count.counted_model}")
